//! The remote-expert frame codec: one request per layer step that needs
//! experts the device does not hold, one reply (weighted sum or error) back.
//!
//! Owns: the byte layout, encoding into a caller's reusable `Vec<u8>`, and
//! decoding untrusted bytes into borrowed views that read little-endian values
//! in place (no copy; a zero-cost `&[f32]`/`&[f16]` slice where the buffer is
//! aligned). Every length, id, limit and reserved byte is checked; random bytes
//! give an error, never a panic. Does not own: MQTT (topics, correlation,
//! deadlines live in `transport`), nor the expert math.
//!
//! # Layout (version 1, all integers little-endian)
//!
//! Every frame starts with the same 8 bytes, fixed for all versions, so a peer
//! can always tell "newer version" from "garbage":
//! `magic b"MOEX" | version u8 | kind u8`.
//!
//! Request (`kind = 1`), 24-byte header:
//! ```text
//!  0 magic[4]  4 version  5 kind  6 dtype  7 flags
//!  8 layer u16  10 tokens u16  12 hidden u32
//! 16 pairs_per_token u8  17 reserved[3] (zero)  20 seq u32
//! 24 tokens × pairs_per_token × (expert u16, weight f32)   unused slot: expert 0xFFFF, weight 0
//!    zero padding to a multiple of 4 bytes
//!    hidden states [tokens, hidden] as f32 or f16
//! ```
//! Reply (`kind = 2`), 20-byte header, then the weighted sum `[tokens, hidden]`:
//! ```text
//!  0 magic[4]  4 version  5 kind  6 dtype  7 reserved (zero)
//!  8 layer u16  10 tokens u16  12 hidden u32  16 seq u32  20 values
//! ```
//! Error (`kind = 3`): the reply header (tokens/hidden echo the request or are
//! 0, dtype is 0), then `code u16 | len u16 | len bytes of UTF-8` (len ≤ 256).
//!
//! The reserved bytes and the pair padding keep the value arrays 4-byte aligned
//! relative to the frame start, so a frame in an aligned buffer is read as a
//! plain slice. `flags` is passed through untouched (opaque to the codec).
//! Duplicate experts within one token are not rejected: the weighted sum is
//! still well defined. Hidden-state values are not checked for finiteness
//! (that would cost a pass over the largest part of the frame); weights are.

use half::f16;

/// First four bytes of every frame.
pub const MAGIC: [u8; 4] = *b"MOEX";
/// The version this code writes and the newest it reads.
pub const VERSION: u8 = 1;
/// Expert id of an unused top-k slot.
pub const NO_EXPERT: u16 = 0xFFFF;
/// Longest error message (bytes of UTF-8) an error frame carries.
pub const MAX_ERROR_MESSAGE: usize = 256;

const PREFIX_LEN: usize = 8;
const REQUEST_HEADER_LEN: usize = 24;
const REPLY_HEADER_LEN: usize = 20;
const PAIR_LEN: usize = 6;

/// What a frame is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    Request = 1,
    Reply = 2,
    Error = 3,
}

impl Kind {
    fn from_u8(b: u8) -> Option<Kind> {
        match b {
            1 => Some(Kind::Request),
            2 => Some(Kind::Reply),
            3 => Some(Kind::Error),
            _ => None,
        }
    }
}

/// Element type of the value arrays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Dtype {
    F32 = 0,
    F16 = 1,
}

impl Dtype {
    fn from_u8(b: u8) -> Option<Dtype> {
        match b {
            0 => Some(Dtype::F32),
            1 => Some(Dtype::F16),
            _ => None,
        }
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Dtype::F32 => 4,
            Dtype::F16 => 2,
        }
    }
}

/// Error codes carried by error frames (and reported by a host that rejects a
/// frame). Stable numbers: new codes come with a new version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum ErrorCode {
    BadFrame = 1,
    UnsupportedVersion = 2,
    UnknownLayer = 3,
    UnknownExpert = 4,
    TooLarge = 5,
    Busy = 6,
    Internal = 7,
}

impl ErrorCode {
    pub fn from_u16(v: u16) -> Option<ErrorCode> {
        Some(match v {
            1 => ErrorCode::BadFrame,
            2 => ErrorCode::UnsupportedVersion,
            3 => ErrorCode::UnknownLayer,
            4 => ErrorCode::UnknownExpert,
            5 => ErrorCode::TooLarge,
            6 => ErrorCode::Busy,
            7 => ErrorCode::Internal,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadFrame => "bad_frame",
            ErrorCode::UnsupportedVersion => "unsupported_version",
            ErrorCode::UnknownLayer => "unknown_layer",
            ErrorCode::UnknownExpert => "unknown_expert",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::Busy => "busy",
            ErrorCode::Internal => "internal",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why bytes are not a valid frame (decode) or arguments cannot make one
/// (encode). [`FrameError::code`] maps each to the code a host answers with.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FrameError {
    #[error("frame truncated: {len} bytes, need at least {need}")]
    Truncated { len: usize, need: usize },
    #[error("bad magic")]
    BadMagic,
    #[error("unsupported frame version {0} (this side speaks {VERSION})")]
    UnsupportedVersion(u8),
    #[error("bad frame version 0")]
    ZeroVersion,
    #[error("unexpected frame kind {0}")]
    BadKind(u8),
    #[error("unknown dtype {0}")]
    BadDtype(u8),
    #[error("reserved or padding bytes are not zero")]
    Reserved,
    #[error("frame length {len}, expected exactly {expected}")]
    Length { len: usize, expected: usize },
    #[error("{what} is {value}, limit {limit}")]
    TooLarge {
        what: &'static str,
        value: u64,
        limit: u64,
    },
    #[error("{what} must not be zero")]
    Zero { what: &'static str },
    #[error("layer {layer} out of range (model has {layers})")]
    UnknownLayer { layer: u16, layers: u16 },
    #[error("token {token} slot {slot}: expert {expert} unknown (model has {experts})")]
    UnknownExpert {
        token: usize,
        slot: usize,
        expert: u16,
        experts: u16,
    },
    #[error("token {token} slot {slot}: weight {weight} not allowed")]
    BadWeight {
        token: usize,
        slot: usize,
        weight: f32,
    },
    #[error("unknown error code {0}")]
    BadErrorCode(u16),
    #[error("error message is not UTF-8")]
    BadUtf8,
    #[error("{what}: got {got} values, expected {expected}")]
    Shape {
        what: &'static str,
        got: usize,
        expected: usize,
    },
}

impl FrameError {
    /// The error code a host sends back for a request rejected with this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            FrameError::UnsupportedVersion(_) => ErrorCode::UnsupportedVersion,
            FrameError::UnknownLayer { .. } => ErrorCode::UnknownLayer,
            FrameError::UnknownExpert { .. } => ErrorCode::UnknownExpert,
            FrameError::TooLarge { .. } => ErrorCode::TooLarge,
            _ => ErrorCode::BadFrame,
        }
    }
}

/// Bounds the decoder enforces, given by the caller (the host from its model,
/// the device from the model it asked about).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most tokens in one frame.
    pub max_tokens: u16,
    /// Largest hidden size.
    pub max_hidden: u32,
    /// Number of routed experts per layer: every used expert id must be below it
    /// (and `pairs_per_token` must not exceed it).
    pub max_experts: u16,
    /// Number of layers: every layer index must be below it.
    pub max_layers: u16,
}

impl Limits {
    /// Limits that accept every frame the format can express (for tests and
    /// tools that only inspect frames).
    pub const LOOSE: Limits = Limits {
        max_tokens: u16::MAX,
        max_hidden: u32::MAX,
        max_experts: u16::MAX,
        max_layers: u16::MAX,
    };
}

/// One (expert, weight) slot of a token's top-k.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pair {
    pub expert: u16,
    pub weight: f32,
}

impl Pair {
    /// The filler for an unused top-k slot.
    pub const UNUSED: Pair = Pair {
        expert: NO_EXPERT,
        weight: 0.0,
    };

    pub fn is_unused(&self) -> bool {
        self.expert == NO_EXPERT
    }
}

/// Source values for encoding; converted to the header's dtype as written.
#[derive(Debug, Clone, Copy)]
pub enum Values<'a> {
    F32(&'a [f32]),
    F16(&'a [f16]),
}

impl Values<'_> {
    pub fn len(&self) -> usize {
        match self {
            Values::F32(v) => v.len(),
            Values::F16(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Header of a request frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestHeader {
    pub dtype: Dtype,
    pub flags: u8,
    pub layer: u16,
    pub tokens: u16,
    pub hidden: u32,
    pub pairs_per_token: u8,
    pub seq: u32,
}

/// Header of a reply or error frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyHeader {
    pub dtype: Dtype,
    pub layer: u16,
    pub tokens: u16,
    pub hidden: u32,
    pub seq: u32,
}

// ---------------------------------------------------------------- encoding

fn put_prefix(out: &mut Vec<u8>, kind: Kind) {
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.push(kind as u8);
}

fn put_values(out: &mut Vec<u8>, dtype: Dtype, values: Values<'_>) {
    match (dtype, values) {
        (Dtype::F32, Values::F32(v)) => {
            if cfg!(target_endian = "little") {
                out.extend_from_slice(bytemuck::cast_slice(v));
            } else {
                v.iter()
                    .for_each(|x| out.extend_from_slice(&x.to_le_bytes()));
            }
        }
        (Dtype::F32, Values::F16(v)) => v
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_f32().to_le_bytes())),
        (Dtype::F16, Values::F16(v)) => {
            if cfg!(target_endian = "little") {
                out.extend_from_slice(bytemuck::cast_slice(v));
            } else {
                v.iter()
                    .for_each(|x| out.extend_from_slice(&x.to_le_bytes()));
            }
        }
        (Dtype::F16, Values::F32(v)) => v
            .iter()
            .for_each(|x| out.extend_from_slice(&f16::from_f32(*x).to_le_bytes())),
    }
}

fn pad4(n: usize) -> usize {
    (4 - n % 4) % 4
}

fn shape(what: &'static str, got: usize, expected: usize) -> Result<(), FrameError> {
    if got == expected {
        Ok(())
    } else {
        Err(FrameError::Shape {
            what,
            got,
            expected,
        })
    }
}

/// Encodes a request into `out` (cleared first; its capacity is reused).
/// `pairs` holds `tokens × pairs_per_token` slots, token-major; `states` holds
/// `tokens × hidden` values, written as `header.dtype`. Checks the shape and
/// every pair (finite weights, unused slots weigh 0) so a frame this writes
/// always decodes under [`Limits::LOOSE`].
pub fn encode_request(
    out: &mut Vec<u8>,
    header: &RequestHeader,
    pairs: &[Pair],
    states: Values<'_>,
) -> Result<(), FrameError> {
    let tokens = header.tokens as usize;
    let k = header.pairs_per_token as usize;
    let hidden = header.hidden as usize;
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
    shape("pairs", pairs.len(), tokens * k)?;
    let n = tokens.checked_mul(hidden).ok_or(FrameError::TooLarge {
        what: "tokens × hidden",
        value: u64::MAX,
        limit: usize::MAX as u64,
    })?;
    shape("hidden states", states.len(), n)?;
    for (i, p) in pairs.iter().enumerate() {
        check_pair(i / k, i % k, *p, u16::MAX)?;
    }
    let pair_bytes = tokens * k * PAIR_LEN;
    out.clear();
    out.reserve(REQUEST_HEADER_LEN + pair_bytes + 3 + n * header.dtype.size());
    put_prefix(out, Kind::Request);
    out.push(header.dtype as u8);
    out.push(header.flags);
    out.extend_from_slice(&header.layer.to_le_bytes());
    out.extend_from_slice(&header.tokens.to_le_bytes());
    out.extend_from_slice(&header.hidden.to_le_bytes());
    out.push(header.pairs_per_token);
    out.extend_from_slice(&[0; 3]);
    out.extend_from_slice(&header.seq.to_le_bytes());
    for p in pairs {
        out.extend_from_slice(&p.expert.to_le_bytes());
        out.extend_from_slice(&p.weight.to_le_bytes());
    }
    out.extend(std::iter::repeat_n(0u8, pad4(pair_bytes)));
    put_values(out, header.dtype, states);
    Ok(())
}

fn put_reply_header(out: &mut Vec<u8>, kind: Kind, dtype: u8, h: &ReplyHeader) {
    put_prefix(out, kind);
    out.push(dtype);
    out.push(0);
    out.extend_from_slice(&h.layer.to_le_bytes());
    out.extend_from_slice(&h.tokens.to_le_bytes());
    out.extend_from_slice(&h.hidden.to_le_bytes());
    out.extend_from_slice(&h.seq.to_le_bytes());
}

/// Encodes a reply (the weighted sum, `tokens × hidden` values written as
/// `header.dtype`) into `out`, cleared first.
pub fn encode_reply(
    out: &mut Vec<u8>,
    header: &ReplyHeader,
    sum: Values<'_>,
) -> Result<(), FrameError> {
    if header.tokens == 0 {
        return Err(FrameError::Zero { what: "tokens" });
    }
    if header.hidden == 0 {
        return Err(FrameError::Zero { what: "hidden" });
    }
    let n = (header.tokens as usize)
        .checked_mul(header.hidden as usize)
        .ok_or(FrameError::TooLarge {
            what: "tokens × hidden",
            value: u64::MAX,
            limit: usize::MAX as u64,
        })?;
    shape("weighted sum", sum.len(), n)?;
    out.clear();
    out.reserve(REPLY_HEADER_LEN + n * header.dtype.size());
    put_reply_header(out, Kind::Reply, header.dtype as u8, header);
    put_values(out, header.dtype, sum);
    Ok(())
}

/// Encodes an error frame into `out`, cleared first. `header.dtype` is ignored
/// (written as 0); a message longer than [`MAX_ERROR_MESSAGE`] bytes is cut at
/// a character boundary.
pub fn encode_error(out: &mut Vec<u8>, header: &ReplyHeader, code: ErrorCode, message: &str) {
    let mut end = message.len().min(MAX_ERROR_MESSAGE);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    let msg = &message.as_bytes()[..end];
    out.clear();
    out.reserve(REPLY_HEADER_LEN + 4 + msg.len());
    put_reply_header(out, Kind::Error, 0, header);
    out.extend_from_slice(&(code as u16).to_le_bytes());
    out.extend_from_slice(&(msg.len() as u16).to_le_bytes());
    out.extend_from_slice(msg);
}

// ---------------------------------------------------------------- decoding

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn f32_at(b: &[u8], at: usize) -> f32 {
    f32::from_bits(u32_at(b, at))
}

fn check_pair(token: usize, slot: usize, p: Pair, experts: u16) -> Result<(), FrameError> {
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
    if buf.len() < PREFIX_LEN {
        return Err(FrameError::Truncated {
            len: buf.len(),
            need: PREFIX_LEN,
        });
    }
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

/// Any frame.
#[derive(Debug, Clone, Copy)]
pub enum Frame<'a> {
    Request(RequestView<'a>),
    Reply(ReplyView<'a>),
    Error(ErrorView<'a>),
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
    })
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
    if buf.len() < REQUEST_HEADER_LEN {
        return Err(FrameError::Truncated {
            len: buf.len(),
            need: REQUEST_HEADER_LEN,
        });
    }
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
    if buf.len() < REPLY_HEADER_LEN {
        return Err(FrameError::Truncated {
            len: buf.len(),
            need: REPLY_HEADER_LEN,
        });
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const LIMITS: Limits = Limits {
        max_tokens: 64,
        max_hidden: 4096,
        max_experts: 128,
        max_layers: 48,
    };

    fn header(tokens: u16, hidden: u32, k: u8) -> RequestHeader {
        RequestHeader {
            dtype: Dtype::F32,
            flags: 0,
            layer: 3,
            tokens,
            hidden,
            pairs_per_token: k,
            seq: 42,
        }
    }

    fn sample(tokens: u16, hidden: u32, k: u8) -> (RequestHeader, Vec<Pair>, Vec<f32>) {
        let pairs = (0..tokens as usize * k as usize)
            .map(|i| {
                if i % k as usize == k as usize - 1 && k > 1 {
                    Pair::UNUSED
                } else {
                    Pair {
                        expert: (i % 128) as u16,
                        weight: 0.25 + i as f32,
                    }
                }
            })
            .collect();
        let states = (0..tokens as usize * hidden as usize)
            .map(|i| i as f32 * 0.5 - 3.0)
            .collect();
        (header(tokens, hidden, k), pairs, states)
    }

    fn encoded(tokens: u16, hidden: u32, k: u8) -> Vec<u8> {
        let (h, p, s) = sample(tokens, hidden, k);
        let mut out = Vec::new();
        encode_request(&mut out, &h, &p, Values::F32(&s)).unwrap();
        out
    }

    #[test]
    fn request_round_trip_and_layout() {
        let (h, p, s) = sample(3, 8, 3);
        let mut out = Vec::new();
        encode_request(&mut out, &h, &p, Values::F32(&s)).unwrap();
        // 24 header + 3*3*6 = 54 pair bytes + 2 pad + 3*8*4 states
        assert_eq!(out.len(), 24 + 54 + 2 + 96);
        assert_eq!(&out[..6], b"MOEX\x01\x01");
        let v = decode_request(&out, &LIMITS).unwrap();
        assert_eq!(*v.header(), h);
        assert_eq!(v.pair(0, 2), Pair::UNUSED);
        assert_eq!(v.pairs(1).count(), 2);
        let mut back = vec![0.0; s.len()];
        v.states().copy_to_f32(&mut back);
        assert_eq!(back, s);
        // Vec<u8> from the global allocator is at least 8-aligned in practice;
        // the states start at a 4-aligned offset, so the zero-copy view works.
        if (out.as_ptr() as usize & 3) == 0 {
            assert_eq!(v.states().as_f32().unwrap(), &s[..]);
        }
    }

    #[test]
    fn encode_reuses_buffer() {
        let (h, p, s) = sample(2, 16, 2);
        let mut out = Vec::with_capacity(4096);
        let ptr = out.as_ptr();
        for _ in 0..3 {
            encode_request(&mut out, &h, &p, Values::F32(&s)).unwrap();
        }
        assert_eq!(out.as_ptr(), ptr);
        assert!(decode_request(&out, &LIMITS).is_ok());
    }

    #[test]
    fn f16_states_convert_both_ways() {
        let (mut h, p, s) = sample(2, 4, 1);
        h.dtype = Dtype::F16;
        let mut out = Vec::new();
        encode_request(&mut out, &h, &p, Values::F32(&s)).unwrap();
        let v = decode_request(&out, &LIMITS).unwrap();
        assert_eq!(v.states().len(), 8);
        for (i, x) in s.iter().enumerate() {
            assert_eq!(v.states().get(i), f16::from_f32(*x).to_f32());
        }
        let rh = ReplyHeader {
            dtype: Dtype::F32,
            layer: 3,
            tokens: 2,
            hidden: 4,
            seq: 9,
        };
        let halves: Vec<f16> = s.iter().map(|x| f16::from_f32(*x)).collect();
        encode_reply(&mut out, &rh, Values::F16(&halves)).unwrap();
        match decode_reply(&out, &LIMITS).unwrap() {
            Response::Reply(r) => {
                assert_eq!(*r.header(), rh);
                assert_eq!(r.sum().get(3), halves[3].to_f32());
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn error_frames() {
        let h = ReplyHeader {
            dtype: Dtype::F16,
            layer: 1,
            tokens: 2,
            hidden: 8,
            seq: 77,
        };
        let mut out = Vec::new();
        encode_error(&mut out, &h, ErrorCode::Busy, "queue full");
        let e = match decode_reply(&out, &LIMITS).unwrap() {
            Response::Error(e) => e,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            (e.code, e.message, e.seq, e.layer),
            (ErrorCode::Busy, "queue full", 77, 1)
        );
        // Long messages are cut at a char boundary, never split a code point.
        let long = "é".repeat(200);
        encode_error(&mut out, &h, ErrorCode::Internal, &long);
        match decode(&out, &LIMITS).unwrap() {
            Frame::Error(e) => {
                assert_eq!(e.message.len(), 256);
                assert!(long.starts_with(e.message));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn rejects_bad_prefix() {
        let good = encoded(1, 4, 1);
        assert!(matches!(
            decode(&good[..5], &LIMITS),
            Err(FrameError::Truncated { .. })
        ));
        let mut b = good.clone();
        b[0] = b'X';
        assert_eq!(decode(&b, &LIMITS).unwrap_err(), FrameError::BadMagic);
        let mut b = good.clone();
        b[4] = 2;
        let err = decode(&b, &LIMITS).unwrap_err();
        assert_eq!(err, FrameError::UnsupportedVersion(2));
        assert_eq!(err.code(), ErrorCode::UnsupportedVersion);
        b[4] = 0;
        assert_eq!(decode(&b, &LIMITS).unwrap_err(), FrameError::ZeroVersion);
        let mut b = good.clone();
        b[5] = 9;
        assert_eq!(decode(&b, &LIMITS).unwrap_err(), FrameError::BadKind(9));
        let mut b = good.clone();
        b[6] = 7;
        assert_eq!(decode(&b, &LIMITS).unwrap_err(), FrameError::BadDtype(7));
        assert_eq!(
            decode_reply(&good, &LIMITS).unwrap_err(),
            FrameError::BadKind(1)
        );
    }

    #[test]
    fn rejects_bad_lengths_and_padding() {
        let good = encoded(1, 4, 1); // 24 + 6 + 2 pad + 16
        assert_eq!(good.len(), 48);
        let mut b = good.clone();
        b.push(0);
        assert_eq!(
            decode(&b, &LIMITS).unwrap_err(),
            FrameError::Length {
                len: 49,
                expected: 48
            }
        );
        assert!(matches!(
            decode(&good[..47], &LIMITS),
            Err(FrameError::Truncated { .. })
        ));
        let mut b = good.clone();
        b[30] = 1; // padding after the single pair
        assert_eq!(decode(&b, &LIMITS).unwrap_err(), FrameError::Reserved);
        let mut b = good.clone();
        b[18] = 1; // reserved header byte
        assert_eq!(decode(&b, &LIMITS).unwrap_err(), FrameError::Reserved);
    }

    #[test]
    fn rejects_values_out_of_limits() {
        let good = encoded(2, 4, 2);
        let small = Limits {
            max_tokens: 1,
            ..LIMITS
        };
        let err = decode(&good, &small).unwrap_err();
        assert!(matches!(err, FrameError::TooLarge { what: "tokens", .. }));
        assert_eq!(err.code(), ErrorCode::TooLarge);
        let narrow = Limits {
            max_hidden: 2,
            ..LIMITS
        };
        assert_eq!(
            decode(&good, &narrow).unwrap_err().code(),
            ErrorCode::TooLarge
        );
        let shallow = Limits {
            max_layers: 3,
            ..LIMITS
        };
        assert_eq!(
            decode(&good, &shallow).unwrap_err().code(),
            ErrorCode::UnknownLayer
        );
        // Expert 1 is used by token 0 slot... ids go 0,1(unused),2,3(unused).
        let few = Limits {
            max_experts: 2,
            ..LIMITS
        };
        let err = decode(&good, &few).unwrap_err();
        assert!(matches!(err, FrameError::UnknownExpert { expert: 2, .. }));
        assert_eq!(err.code(), ErrorCode::UnknownExpert);
    }

    #[test]
    fn rejects_bad_weights() {
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            let mut b = encoded(1, 4, 1);
            b[26..30].copy_from_slice(&bad.to_le_bytes());
            assert!(matches!(
                decode(&b, &LIMITS),
                Err(FrameError::BadWeight { .. })
            ));
        }
        // An unused slot must weigh exactly 0.
        let mut b = encoded(1, 4, 2);
        assert_eq!(u16_at(&b, 30), NO_EXPERT);
        b[32..36].copy_from_slice(&1.0f32.to_le_bytes());
        assert!(matches!(
            decode(&b, &LIMITS),
            Err(FrameError::BadWeight { slot: 1, .. })
        ));
        // Encode refuses what decode would refuse.
        let (h, mut p, s) = sample(1, 4, 1);
        p[0].weight = f32::NAN;
        assert!(encode_request(&mut Vec::new(), &h, &p, Values::F32(&s)).is_err());
    }

    #[test]
    fn encode_checks_shapes() {
        let (h, p, s) = sample(2, 4, 2);
        let mut out = Vec::new();
        assert!(matches!(
            encode_request(&mut out, &h, &p[1..], Values::F32(&s)),
            Err(FrameError::Shape { what: "pairs", .. })
        ));
        assert!(matches!(
            encode_request(&mut out, &h, &p, Values::F32(&s[1..])),
            Err(FrameError::Shape { .. })
        ));
        let zero = RequestHeader { tokens: 0, ..h };
        assert!(encode_request(&mut out, &zero, &[], Values::F32(&[])).is_err());
    }

    #[test]
    fn error_frame_validation() {
        let h = ReplyHeader {
            dtype: Dtype::F32,
            layer: 0,
            tokens: 0,
            hidden: 0,
            seq: 1,
        };
        let mut out = Vec::new();
        encode_error(&mut out, &h, ErrorCode::Internal, "x");
        let mut b = out.clone();
        b[20] = 99;
        assert_eq!(
            decode(&b, &LIMITS).unwrap_err(),
            FrameError::BadErrorCode(99)
        );
        let mut b = out.clone();
        *b.last_mut().unwrap() = 0xFF;
        assert_eq!(decode(&b, &LIMITS).unwrap_err(), FrameError::BadUtf8);
        let mut b = out.clone();
        b[22] = 2; // says 2 bytes, has 1
        assert!(matches!(
            decode(&b, &LIMITS),
            Err(FrameError::Truncated { .. })
        ));
    }

    fn arb_request() -> impl Strategy<Value = (RequestHeader, Vec<Pair>, Vec<u32>)> {
        (1u16..6, 1u32..24, 1u8..5, any::<u16>(), any::<u32>(), any::<u8>(), any::<bool>())
            .prop_flat_map(|(tokens, hidden, k, layer, seq, flags, half)| {
                let n_pairs = tokens as usize * k as usize;
                let n_states = tokens as usize * hidden as usize;
                let pair = prop_oneof![
                    1 => Just(Pair::UNUSED),
                    4 => (0u16..128, -1.0e6f32..1.0e6).prop_map(|(expert, weight)| Pair { expert, weight }),
                ];
                (
                    Just(RequestHeader {
                        dtype: if half { Dtype::F16 } else { Dtype::F32 },
                        flags,
                        layer: layer % 48,
                        tokens,
                        hidden,
                        pairs_per_token: k,
                        seq,
                    }),
                    proptest::collection::vec(pair, n_pairs),
                    // Raw bit patterns: NaNs, infinities, subnormals included.
                    proptest::collection::vec(any::<u32>(), n_states),
                )
            })
    }

    proptest! {
        #[test]
        fn prop_request_round_trip((h, pairs, bits) in arb_request()) {
            let mut out = Vec::new();
            let f32s: Vec<f32> = bits.iter().map(|b| f32::from_bits(*b)).collect();
            let f16s: Vec<f16> = bits.iter().map(|b| f16::from_bits(*b as u16)).collect();
            let values = match h.dtype {
                Dtype::F32 => Values::F32(&f32s),
                Dtype::F16 => Values::F16(&f16s),
            };
            encode_request(&mut out, &h, &pairs, values).unwrap();
            let v = decode_request(&out, &LIMITS).unwrap();
            prop_assert_eq!(*v.header(), h);
            for t in 0..h.tokens as usize {
                for s in 0..h.pairs_per_token as usize {
                    let (a, b) = (v.pair(t, s), pairs[t * h.pairs_per_token as usize + s]);
                    prop_assert_eq!(a.expert, b.expert);
                    prop_assert_eq!(a.weight.to_bits(), b.weight.to_bits());
                }
            }
            let states = v.states();
            prop_assert_eq!(states.len(), bits.len());
            for (i, b) in bits.iter().enumerate() {
                let raw = match h.dtype {
                    Dtype::F32 => u32::from_le_bytes(states.bytes()[i * 4..i * 4 + 4].try_into().unwrap()),
                    Dtype::F16 => u16::from_le_bytes(states.bytes()[i * 2..i * 2 + 2].try_into().unwrap()) as u32,
                };
                let want = match h.dtype { Dtype::F32 => *b, Dtype::F16 => *b & 0xFFFF };
                prop_assert_eq!(raw, want);
            }
        }

        #[test]
        fn prop_reply_round_trip(tokens in 1u16..6, hidden in 1u32..40, seq: u32, layer in 0u16..48,
                                 bits in proptest::collection::vec(any::<u32>(), 240)) {
            let n = tokens as usize * hidden as usize;
            let vals: Vec<f32> = bits[..n].iter().map(|b| f32::from_bits(*b)).collect();
            let h = ReplyHeader { dtype: Dtype::F32, layer, tokens, hidden, seq };
            let mut out = Vec::new();
            encode_reply(&mut out, &h, Values::F32(&vals)).unwrap();
            match decode_reply(&out, &LIMITS).unwrap() {
                Response::Reply(r) => {
                    prop_assert_eq!(*r.header(), h);
                    let mut back = vec![0.0f32; n];
                    r.sum().copy_to_f32(&mut back);
                    for (a, b) in back.iter().zip(&vals) {
                        prop_assert_eq!(a.to_bits(), b.to_bits());
                    }
                }
                Response::Error(e) => prop_assert!(false, "{:?}", e),
            }
        }

        #[test]
        fn prop_error_round_trip(msg in "\\PC{0,300}", seq: u32, code in 1u16..8) {
            let code = ErrorCode::from_u16(code).unwrap();
            let h = ReplyHeader { dtype: Dtype::F32, layer: 0, tokens: 0, hidden: 0, seq };
            let mut out = Vec::new();
            encode_error(&mut out, &h, code, &msg);
            match decode_reply(&out, &LIMITS).unwrap() {
                Response::Error(e) => {
                    prop_assert_eq!(e.code, code);
                    prop_assert_eq!(e.seq, seq);
                    prop_assert!(msg.starts_with(e.message));
                    prop_assert!(e.message.len() <= MAX_ERROR_MESSAGE);
                }
                Response::Reply(r) => prop_assert!(false, "{:?}", r),
            }
        }

        /// Random bytes never panic, whatever the limits.
        #[test]
        fn prop_random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512),
                                         prefix in any::<bool>(), kind in 0u8..5) {
            let mut b = bytes;
            if prefix && b.len() >= 8 {
                // Give the fuzzer a valid prefix so it reaches the bodies.
                b[..4].copy_from_slice(&MAGIC);
                b[4] = VERSION;
                b[5] = kind;
            }
            for limits in [LIMITS, Limits::LOOSE] {
                if let Ok(Frame::Request(v)) = decode(&b, &limits) {
                    for t in 0..v.tokens() { let _ = v.pairs(t).count(); }
                    let mut out = vec![0.0; v.states().len()];
                    v.states().copy_to_f32(&mut out);
                }
                let _ = decode_reply(&b, &limits);
                let _ = decode_request(&b, &limits);
            }
        }

        /// Single-byte corruptions of a valid frame never panic either.
        #[test]
        fn prop_mutated_frames_never_panic(at in 0usize..200, byte: u8, cut in 0usize..200) {
            let mut b = encoded(3, 8, 3);
            let at = at % b.len();
            b[at] = byte;
            let _ = decode(&b, &LIMITS);
            b.truncate(cut.min(b.len()));
            let _ = decode(&b, &LIMITS);
        }
    }
}
