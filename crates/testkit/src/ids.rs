//! Readable delivery ids for tests: a fan-out named by a short label, and deliveries written
//! as `dlv_{label}{index:02x}` as the fan-outs of a test's publishes name them.

use hallway_domain::{DeliveryId, FanOutId};

/// The fan-out a test calls `label` (at most 16 bytes; labels sort as their bytes do, after
/// being right-aligned, so same-length labels sort alphabetically).
pub fn fan(label: &str) -> FanOutId {
    let bytes = label.as_bytes();
    assert!(
        bytes.len() <= 16,
        "fan-out label {label:?} is over 16 bytes"
    );
    let mut out = [0u8; 16];
    out[16 - bytes.len()..].copy_from_slice(bytes);
    FanOutId::from_bytes(out)
}

/// The delivery a test writes as `dlv_{label}{index:02x}` (the index in the last two hex
/// digits, as publishes number their deliveries); `dlv_{label}` without two hex digits to
/// end it, or any text without the `dlv_` prefix, is index 0 of the fan-out named by all of
/// it (a test send, a delivery of its own).
pub fn dlv(text: &str) -> DeliveryId {
    let Some(rest) = text.strip_prefix("dlv_") else {
        return fan(text).delivery(0);
    };
    if rest.len() > 2 {
        let (label, index) = rest.split_at(rest.len() - 2);
        if let Ok(index) = u32::from_str_radix(index, 16) {
            return fan(label).delivery(index);
        }
    }
    fan(rest).delivery(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_make_distinct_fan_outs_and_deliveries() {
        assert_eq!(dlv("dlv_a00"), fan("a").delivery(0));
        assert_eq!(dlv("dlv_a01"), fan("a").delivery(1));
        assert_eq!(dlv("dlv_t"), fan("t").delivery(0));
        assert_ne!(dlv("dlv_a00").fan_out(), dlv("dlv_b00").fan_out());
        assert!(fan("s1") < fan("s2"));
        assert_eq!(dlv("gone"), fan("gone").delivery(0));
        assert_eq!(dlv("d1000"), fan("d1000").delivery(0));
        assert_eq!(dlv("dlv_3_a"), fan("3_a").delivery(0));
    }
}
