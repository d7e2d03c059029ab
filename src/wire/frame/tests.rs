//! The frame codec: round trips, layout, and every rejection (property-tested).

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

    /// Hints round trip for any layer and expert list within the limits.
    #[test]
    fn prop_hints_round_trip(layer in 0u16..48, experts in proptest::collection::vec(0u16..128, 1..128)) {
        let mut b = Vec::new();
        encode_hint(&mut b, layer, &experts).unwrap();
        prop_assert_eq!(b.len(), 12 + 2 * experts.len());
        match decode(&b, &LIMITS).unwrap() {
            Frame::Hint(h) => {
                prop_assert_eq!(h.layer, layer);
                prop_assert_eq!(h.experts().collect::<Vec<_>>(), experts);
            }
            other => prop_assert!(false, "{:?}", other),
        }
        // A hint is neither a request nor a response.
        prop_assert_eq!(decode_request(&b, &LIMITS).unwrap_err(), FrameError::BadKind(4));
        prop_assert!(decode_reply(&b, &LIMITS).is_err());
    }

    /// Random bytes never panic, whatever the limits.
    #[test]
    fn prop_random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512),
                                     prefix in any::<bool>(), kind in 0u8..6) {
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
            if let Ok(h) = decode_hint(&b, &limits) {
                prop_assert_eq!(h.experts().count(), h.len());
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

#[test]
fn hint_layout_and_rejections() {
    let mut b = Vec::new();
    encode_hint(&mut b, 2, &[5, 7]).unwrap();
    assert_eq!(&b[..6], b"MOEX\x01\x04");
    assert_eq!(&b[6..], &[0, 0, 2, 0, 2, 0, 5, 0, 7, 0]);
    assert_eq!(
        encode_hint(&mut b, 0, &[]).unwrap_err(),
        FrameError::Zero { what: "experts" }
    );
    assert!(encode_hint(&mut b, 0, &[NO_EXPERT]).is_err());
    let good = {
        let mut g = Vec::new();
        encode_hint(&mut g, 2, &[5, 7]).unwrap();
        g
    };
    let small = Limits {
        max_experts: 6,
        max_layers: 2,
        ..LIMITS
    };
    let e = decode_hint(&good, &small).unwrap_err();
    assert!(
        matches!(
            e,
            FrameError::UnknownLayer {
                layer: 2,
                layers: 2
            }
        ),
        "{e}"
    );
    let small = Limits {
        max_layers: 3,
        ..small
    };
    let e = decode_hint(&good, &small).unwrap_err();
    assert!(
        matches!(e, FrameError::UnknownExpert { expert: 7, .. }),
        "{e}"
    );
    let mut bad = good.clone();
    bad[6] = 1;
    assert_eq!(
        decode_hint(&bad, &LIMITS).unwrap_err(),
        FrameError::Reserved
    );
    let mut bad = good.clone();
    bad.push(0);
    assert!(matches!(
        decode_hint(&bad, &LIMITS).unwrap_err(),
        FrameError::Length { .. }
    ));
    assert!(matches!(
        decode_hint(&good[..13], &LIMITS).unwrap_err(),
        FrameError::Truncated { .. }
    ));
    let mut bad = good.clone();
    bad[10] = 0;
    bad.truncate(12);
    assert_eq!(
        decode_hint(&bad, &LIMITS).unwrap_err(),
        FrameError::Zero { what: "experts" }
    );
}
