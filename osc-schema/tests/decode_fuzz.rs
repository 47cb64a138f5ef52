//! Property tests standing in for the cargo-fuzz target (which needs nightly and cargo-fuzz):
//! decode never panics; garbage and mutated packets either decode to validated commands or
//! fail with a non-empty reason.

use latentd_osc_schema::rosc::{OscMessage, OscPacket, OscType, encoder};
use latentd_osc_schema::{Command, Schema, reference_knobs};
use proptest::prelude::*;

fn schema() -> Schema {
    Schema::new(reference_knobs()).unwrap()
}

fn valid_packet() -> impl Strategy<Value = Vec<u8>> {
    let names: Vec<&'static str> = reference_knobs().iter().map(|k| k.name).collect();
    (proptest::sample::select(names), any::<f32>(), any::<i32>()).prop_map(|(name, f, i)| {
        let args = if i % 3 == 0 {
            vec![OscType::Int(i)]
        } else {
            vec![OscType::Float(f)]
        };
        encoder::encode(&OscPacket::Message(OscMessage {
            addr: format!("/knob/{name}"),
            args,
        }))
        .unwrap()
    })
}

fn check(schema: &Schema, packet: &[u8]) {
    match schema.decode(packet) {
        Ok(decoded) => {
            for command in decoded.value {
                if let Command::SetKnob { index, value, .. } = command {
                    let k = &schema.knobs()[index];
                    assert!(value.is_finite() && value >= k.min && value <= k.max);
                }
            }
        }
        Err(fail) => assert!(!fail.reason.is_empty() && !fail.address.is_empty()),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let s = schema();
        check(&s, &bytes);
        let mut bundle = b"#bundle\0\0\0\0\0\0\0\0\x01".to_vec();
        bundle.extend_from_slice(&bytes);
        check(&s, &bundle);
    }

    #[test]
    fn mutated_valid_packets_never_panic(
        packet in valid_packet(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in any::<prop::sample::Index>(),
    ) {
        let s = schema();
        check(&s, &packet);
        let mut mutated = packet.clone();
        for (at, byte) in flips {
            let i = at.index(mutated.len());
            mutated[i] = byte;
        }
        check(&s, &mutated);
        check(&s, &packet[..cut.index(packet.len())]);
    }
}
