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
//! Hint (`kind = 4`), device to host, never answered: the experts of a layer
//! the device expects to ask for next (its prediction), so the host can read
//! them in before the request comes. 12-byte header, then the ids:
//! ```text
//!  0 magic[4]  4 version  5 kind  6 reserved[2] (zero)
//!  8 layer u16  10 count u16  12 count × expert u16
//! ```
//! A host that does not know the kind drops it (it carries no response topic).
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
const HINT_HEADER_LEN: usize = 12;

/// What a frame is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    Request = 1,
    Reply = 2,
    Error = 3,
    Hint = 4,
}

impl Kind {
    fn from_u8(b: u8) -> Option<Kind> {
        match b {
            1 => Some(Kind::Request),
            2 => Some(Kind::Reply),
            3 => Some(Kind::Error),
            4 => Some(Kind::Hint),
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

/// Encodes a hint (the experts of `layer` the device expects to ask for)
/// into `out`, cleared first. At least one expert, no [`NO_EXPERT`].
pub fn encode_hint(out: &mut Vec<u8>, layer: u16, experts: &[u16]) -> Result<(), FrameError> {
    if experts.is_empty() {
        return Err(FrameError::Zero { what: "experts" });
    }
    let count = u16::try_from(experts.len()).map_err(|_| FrameError::TooLarge {
        what: "experts",
        value: experts.len() as u64,
        limit: u16::MAX as u64,
    })?;
    if let Some(&e) = experts.iter().find(|&&e| e == NO_EXPERT) {
        return Err(FrameError::UnknownExpert {
            token: 0,
            slot: 0,
            expert: e,
            experts: NO_EXPERT,
        });
    }
    out.clear();
    out.reserve(HINT_HEADER_LEN + 2 * experts.len());
    put_prefix(out, Kind::Hint);
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&layer.to_le_bytes());
    out.extend_from_slice(&count.to_le_bytes());
    for e in experts {
        out.extend_from_slice(&e.to_le_bytes());
    }
    Ok(())
}

// ---------------------------------------------------------------- decoding

mod decode;
use decode::check_pair;
#[cfg(test)]
use decode::u16_at;
pub use decode::*;

#[cfg(test)]
mod tests;
