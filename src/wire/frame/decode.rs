//! Decoding: frames are validated against [`Limits`] and read in place
//! (views borrow the buffer; nothing is copied until asked).

use super::*;

pub(super) fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn f32_at(b: &[u8], at: usize) -> f32 {
    f32::from_bits(u32_at(b, at))
}

pub(super) fn check_pair(
    token: usize,
    slot: usize,
    p: Pair,
    experts: u16,
) -> Result<(), FrameError> {
    if p.expert == NO_EXPERT {
        if p.weight.to_bits() != 0 {
            return Err(FrameError::BadWeight {
                token,
                slot,
                weight: p.weight,
            });
        }
        return Ok(());
    }
    if p.expert >= experts {
        return Err(FrameError::UnknownExpert {
            token,
            slot,
            expert: p.expert,
            experts,
        });
    }
    if !p.weight.is_finite() {
        return Err(FrameError::BadWeight {
            token,
            slot,
            weight: p.weight,
        });
    }
    Ok(())
}

fn too_large(what: &'static str, value: u64, limit: u64) -> Result<(), FrameError> {
    if value > limit {
        Err(FrameError::TooLarge { what, value, limit })
    } else {
        Ok(())
    }
}

/// Checks magic and version, returns the kind.
fn prefix(buf: &[u8]) -> Result<Kind, FrameError> {
    at_least(buf, PREFIX_LEN)?;
    if buf[..4] != MAGIC {
        return Err(FrameError::BadMagic);
    }
    match buf[4] {
        0 => return Err(FrameError::ZeroVersion),
        v if v > VERSION => return Err(FrameError::UnsupportedVersion(v)),
        _ => {}
    }
    Kind::from_u8(buf[5]).ok_or(FrameError::BadKind(buf[5]))
}

/// Reads a value array in place: little-endian f32 or f16, borrowed from the
/// frame. Use [`ValuesView::as_f32`]/[`ValuesView::as_f16`] for a zero-copy
/// slice (when the bytes happen to be aligned), otherwise `get`/`copy_to_f32`.
#[derive(Clone, Copy)]
pub struct ValuesView<'a> {
    dtype: Dtype,
    bytes: &'a [u8],
}

impl std::fmt::Debug for ValuesView<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ValuesView")
            .field("dtype", &self.dtype)
            .field("len", &self.len())
            .finish()
    }
}

impl<'a> ValuesView<'a> {
    pub fn dtype(&self) -> Dtype {
        self.dtype
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        self.bytes.len() / self.dtype.size()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The raw little-endian bytes.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// Value `i` as f32. Panics if `i >= len()`.
    pub fn get(&self, i: usize) -> f32 {
        match self.dtype {
            Dtype::F32 => f32_at(self.bytes, i * 4),
            Dtype::F16 => f16::from_bits(u16_at(self.bytes, i * 2)).to_f32(),
        }
    }

    /// The values as `&[f32]` with no copy, if the dtype is f32, the target is
    /// little-endian and the bytes are 4-byte aligned.
    pub fn as_f32(&self) -> Option<&'a [f32]> {
        if self.dtype != Dtype::F32 || cfg!(target_endian = "big") {
            return None;
        }
        bytemuck::try_cast_slice(self.bytes).ok()
    }

    /// The values as `&[f16]` with no copy, if the dtype is f16, the target is
    /// little-endian and the bytes are 2-byte aligned.
    pub fn as_f16(&self) -> Option<&'a [f16]> {
        if self.dtype != Dtype::F16 || cfg!(target_endian = "big") {
            return None;
        }
        bytemuck::try_cast_slice(self.bytes).ok()
    }

    /// Converts values `[start, start + out.len())` into `out`.
    /// Panics if the range is out of bounds.
    pub fn copy_range_to_f32(&self, start: usize, out: &mut [f32]) {
        assert!(start + out.len() <= self.len(), "range out of bounds");
        if let Some(s) = self.as_f32() {
            out.copy_from_slice(&s[start..start + out.len()]);
            return;
        }
        let sz = self.dtype.size();
        let bytes = &self.bytes[start * sz..(start + out.len()) * sz];
        match self.dtype {
            Dtype::F32 => {
                for (o, c) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                    *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                }
            }
            Dtype::F16 => {
                for (o, c) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                    *o = f16::from_le_bytes([c[0], c[1]]).to_f32();
                }
            }
        }
    }

    /// Converts all values into `out`, which must have `len()` elements.
    pub fn copy_to_f32(&self, out: &mut [f32]) {
        assert_eq!(out.len(), self.len(), "output length");
        self.copy_range_to_f32(0, out);
    }
}

/// A decoded, validated request borrowing the frame bytes.
#[derive(Debug, Clone, Copy)]
pub struct RequestView<'a> {
    header: RequestHeader,
    pairs: &'a [u8],
    states: ValuesView<'a>,
}

impl<'a> RequestView<'a> {
    pub fn header(&self) -> &RequestHeader {
        &self.header
    }

    pub fn layer(&self) -> u16 {
        self.header.layer
    }

    pub fn tokens(&self) -> usize {
        self.header.tokens as usize
    }

    pub fn hidden(&self) -> usize {
        self.header.hidden as usize
    }

    pub fn seq(&self) -> u32 {
        self.header.seq
    }

    pub fn pairs_per_token(&self) -> usize {
        self.header.pairs_per_token as usize
    }

    /// Slot `slot` of token `token` (may be [`Pair::UNUSED`]).
    /// Panics if out of range.
    pub fn pair(&self, token: usize, slot: usize) -> Pair {
        let k = self.pairs_per_token();
        assert!(token < self.tokens() && slot < k, "pair index out of range");
        let at = (token * k + slot) * PAIR_LEN;
        Pair {
            expert: u16_at(self.pairs, at),
            weight: f32_at(self.pairs, at + 2),
        }
    }

    /// The used (expert, weight) pairs of one token.
    pub fn pairs(&self, token: usize) -> impl Iterator<Item = Pair> + '_ {
        (0..self.pairs_per_token())
            .map(move |s| self.pair(token, s))
            .filter(|p| !p.is_unused())
    }

    /// The hidden states `[tokens, hidden]`.
    pub fn states(&self) -> ValuesView<'a> {
        self.states
    }
}

/// A decoded, validated reply borrowing the frame bytes.
#[derive(Debug, Clone, Copy)]
pub struct ReplyView<'a> {
    header: ReplyHeader,
    sum: ValuesView<'a>,
}

impl<'a> ReplyView<'a> {
    pub fn header(&self) -> &ReplyHeader {
        &self.header
    }

    pub fn seq(&self) -> u32 {
        self.header.seq
    }

    /// The weighted sum `[tokens, hidden]`.
    pub fn sum(&self) -> ValuesView<'a> {
        self.sum
    }
}

/// A decoded error frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ErrorView<'a> {
    pub layer: u16,
    pub tokens: u16,
    pub hidden: u32,
    pub seq: u32,
    pub code: ErrorCode,
    pub message: &'a str,
}

/// What a host sends back: the sum or an error.
#[derive(Debug, Clone, Copy)]
pub enum Response<'a> {
    Reply(ReplyView<'a>),
    Error(ErrorView<'a>),
}

/// A decoded hint: the experts of `layer` a device expects to ask for.
#[derive(Debug, Clone, Copy)]
pub struct HintView<'a> {
    pub layer: u16,
    ids: &'a [u8],
}

impl HintView<'_> {
    pub fn experts(&self) -> impl Iterator<Item = u16> + '_ {
        self.ids
            .chunks_exact(2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    }

    pub fn len(&self) -> usize {
        self.ids.len() / 2
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// Any frame.
#[derive(Debug, Clone, Copy)]
pub enum Frame<'a> {
    Request(RequestView<'a>),
    Reply(ReplyView<'a>),
    Error(ErrorView<'a>),
    Hint(HintView<'a>),
}

/// `buf` holds at least `need` bytes.
fn at_least(buf: &[u8], need: usize) -> Result<(), FrameError> {
    if buf.len() < need {
        Err(FrameError::Truncated {
            len: buf.len(),
            need,
        })
    } else {
        Ok(())
    }
}

fn exact(len: usize, expected: usize) -> Result<(), FrameError> {
    if len < expected {
        Err(FrameError::Truncated {
            len,
            need: expected,
        })
    } else if len > expected {
        Err(FrameError::Length { len, expected })
    } else {
        Ok(())
    }
}

/// Decodes any frame kind.
pub fn decode<'a>(buf: &'a [u8], limits: &Limits) -> Result<Frame<'a>, FrameError> {
    Ok(match prefix(buf)? {
        Kind::Request => Frame::Request(request_body(buf, limits)?),
        Kind::Reply => Frame::Reply(reply_body(buf, limits)?),
        Kind::Error => Frame::Error(error_body(buf)?),
        Kind::Hint => Frame::Hint(hint_body(buf, limits)?),
    })
}

/// Decodes a hint; any other kind is [`FrameError::BadKind`].
pub fn decode_hint<'a>(buf: &'a [u8], limits: &Limits) -> Result<HintView<'a>, FrameError> {
    match prefix(buf)? {
        Kind::Hint => hint_body(buf, limits),
        k => Err(FrameError::BadKind(k as u8)),
    }
}

fn hint_body<'a>(buf: &'a [u8], limits: &Limits) -> Result<HintView<'a>, FrameError> {
    at_least(buf, HINT_HEADER_LEN)?;
    if buf[6] != 0 || buf[7] != 0 {
        return Err(FrameError::Reserved);
    }
    let layer = u16_at(buf, 8);
    if layer >= limits.max_layers {
        return Err(FrameError::UnknownLayer {
            layer,
            layers: limits.max_layers,
        });
    }
    let count = u16_at(buf, 10);
    if count == 0 {
        return Err(FrameError::Zero { what: "experts" });
    }
    if count > limits.max_experts {
        return Err(FrameError::TooLarge {
            what: "experts",
            value: count as u64,
            limit: limits.max_experts as u64,
        });
    }
    exact(buf.len(), HINT_HEADER_LEN + 2 * count as usize)?;
    let ids = &buf[HINT_HEADER_LEN..];
    for (slot, b) in ids.chunks_exact(2).enumerate() {
        let expert = u16::from_le_bytes([b[0], b[1]]);
        if expert >= limits.max_experts {
            return Err(FrameError::UnknownExpert {
                token: 0,
                slot,
                expert,
                experts: limits.max_experts,
            });
        }
    }
    Ok(HintView { layer, ids })
}

/// Decodes a request; any other kind is [`FrameError::BadKind`].
pub fn decode_request<'a>(buf: &'a [u8], limits: &Limits) -> Result<RequestView<'a>, FrameError> {
    match prefix(buf)? {
        Kind::Request => request_body(buf, limits),
        k => Err(FrameError::BadKind(k as u8)),
    }
}

/// Decodes a reply or an error frame; a request is [`FrameError::BadKind`].
pub fn decode_reply<'a>(buf: &'a [u8], limits: &Limits) -> Result<Response<'a>, FrameError> {
    match prefix(buf)? {
        Kind::Reply => Ok(Response::Reply(reply_body(buf, limits)?)),
        Kind::Error => Ok(Response::Error(error_body(buf)?)),
        k => Err(FrameError::BadKind(k as u8)),
    }
}

fn request_body<'a>(buf: &'a [u8], limits: &Limits) -> Result<RequestView<'a>, FrameError> {
    at_least(buf, REQUEST_HEADER_LEN)?;
    let dtype = Dtype::from_u8(buf[6]).ok_or(FrameError::BadDtype(buf[6]))?;
    let header = RequestHeader {
        dtype,
        flags: buf[7],
        layer: u16_at(buf, 8),
        tokens: u16_at(buf, 10),
        hidden: u32_at(buf, 12),
        pairs_per_token: buf[16],
        seq: u32_at(buf, 20),
    };
    if buf[17..20] != [0, 0, 0] {
        return Err(FrameError::Reserved);
    }
    if header.layer >= limits.max_layers {
        return Err(FrameError::UnknownLayer {
            layer: header.layer,
            layers: limits.max_layers,
        });
    }
    let (tokens, k, hidden) = (
        header.tokens as usize,
        header.pairs_per_token as usize,
        header.hidden as usize,
    );
    if tokens == 0 {
        return Err(FrameError::Zero { what: "tokens" });
    }
    if k == 0 {
        return Err(FrameError::Zero {
            what: "pairs_per_token",
        });
    }
    if hidden == 0 {
        return Err(FrameError::Zero { what: "hidden" });
    }
    too_large("tokens", tokens as u64, limits.max_tokens as u64)?;
    too_large("hidden", hidden as u64, limits.max_hidden as u64)?;
    too_large("pairs_per_token", k as u64, limits.max_experts as u64)?;
    // Lengths in u64: tokens < 2^16, k < 2^8, hidden < 2^32, so nothing overflows.
    let pair_bytes = tokens * k * PAIR_LEN;
    let pad = pad4(pair_bytes);
    let state_bytes = tokens as u64 * hidden as u64 * dtype.size() as u64;
    let expected = (REQUEST_HEADER_LEN + pair_bytes + pad) as u64 + state_bytes;
    if expected > usize::MAX as u64 {
        return Err(FrameError::TooLarge {
            what: "frame bytes",
            value: expected,
            limit: usize::MAX as u64,
        });
    }
    exact(buf.len(), expected as usize)?;
    let pairs_end = REQUEST_HEADER_LEN + pair_bytes;
    if buf[pairs_end..pairs_end + pad].iter().any(|&b| b != 0) {
        return Err(FrameError::Reserved);
    }
    let pairs = &buf[REQUEST_HEADER_LEN..pairs_end];
    for (i, c) in pairs.chunks_exact(PAIR_LEN).enumerate() {
        let p = Pair {
            expert: u16::from_le_bytes([c[0], c[1]]),
            weight: f32::from_le_bytes([c[2], c[3], c[4], c[5]]),
        };
        check_pair(i / k, i % k, p, limits.max_experts)?;
    }
    Ok(RequestView {
        header,
        pairs,
        states: ValuesView {
            dtype,
            bytes: &buf[pairs_end + pad..],
        },
    })
}

fn reply_header(buf: &[u8]) -> Result<(u8, ReplyHeader), FrameError> {
    at_least(buf, REPLY_HEADER_LEN)?;
    if buf[7] != 0 {
        return Err(FrameError::Reserved);
    }
    let raw_dtype = buf[6];
    Ok((
        raw_dtype,
        ReplyHeader {
            dtype: Dtype::from_u8(raw_dtype).ok_or(FrameError::BadDtype(raw_dtype))?,
            layer: u16_at(buf, 8),
            tokens: u16_at(buf, 10),
            hidden: u32_at(buf, 12),
            seq: u32_at(buf, 16),
        },
    ))
}

fn reply_body<'a>(buf: &'a [u8], limits: &Limits) -> Result<ReplyView<'a>, FrameError> {
    let (_, header) = reply_header(buf)?;
    if header.layer >= limits.max_layers {
        return Err(FrameError::UnknownLayer {
            layer: header.layer,
            layers: limits.max_layers,
        });
    }
    if header.tokens == 0 {
        return Err(FrameError::Zero { what: "tokens" });
    }
    if header.hidden == 0 {
        return Err(FrameError::Zero { what: "hidden" });
    }
    too_large("tokens", header.tokens as u64, limits.max_tokens as u64)?;
    too_large("hidden", header.hidden as u64, limits.max_hidden as u64)?;
    let expected = REPLY_HEADER_LEN as u64
        + header.tokens as u64 * header.hidden as u64 * header.dtype.size() as u64;
    if expected > usize::MAX as u64 {
        return Err(FrameError::TooLarge {
            what: "frame bytes",
            value: expected,
            limit: usize::MAX as u64,
        });
    }
    exact(buf.len(), expected as usize)?;
    Ok(ReplyView {
        header,
        sum: ValuesView {
            dtype: header.dtype,
            bytes: &buf[REPLY_HEADER_LEN..],
        },
    })
}

fn error_body(buf: &[u8]) -> Result<ErrorView<'_>, FrameError> {
    let (raw_dtype, h) = reply_header(buf)?;
    if raw_dtype != 0 {
        return Err(FrameError::Reserved);
    }
    let fixed = REPLY_HEADER_LEN + 4;
    if buf.len() < fixed {
        return Err(FrameError::Truncated {
            len: buf.len(),
            need: fixed,
        });
    }
    let raw_code = u16_at(buf, REPLY_HEADER_LEN);
    let code = ErrorCode::from_u16(raw_code).ok_or(FrameError::BadErrorCode(raw_code))?;
    let len = u16_at(buf, REPLY_HEADER_LEN + 2) as usize;
    too_large("error message bytes", len as u64, MAX_ERROR_MESSAGE as u64)?;
    exact(buf.len(), fixed + len)?;
    let message = std::str::from_utf8(&buf[fixed..]).map_err(|_| FrameError::BadUtf8)?;
    Ok(ErrorView {
        layer: h.layer,
        tokens: h.tokens,
        hidden: h.hidden,
        seq: h.seq,
        code,
        message,
    })
}
