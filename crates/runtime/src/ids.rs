//! Fresh ids, secrets and API keys, from a [`RandomSource`]: the operating system's secure
//! source unless the engine's `Config::random` names another.

use hallway_domain::{DeliveryId, FanOutId, Timestamp};
use sha2::{Digest, Sha256};

/// Where fresh ids, secrets, API keys and sealing nonces come from. A seam beside `Clock`:
/// production reads the operating system ([`OsRandom`]); a deterministic simulation plugs in
/// a seeded generator so that a run replays exactly. Anything else must be a
/// cryptographically secure source: secrets and API keys come from it.
pub trait RandomSource: Send + Sync + 'static {
    /// Fills `buf` with random bytes.
    fn fill(&self, buf: &mut [u8]);

    /// Fills `buf` with random bytes for an id, which is not a secret: a source may serve
    /// these from bytes it drew earlier, since a publish draws one and a system call each
    /// was a measurable share of a publish. Secrets, keys and nonces use [`fill`](Self::fill).
    fn fill_id(&self, buf: &mut [u8]) {
        self.fill(buf);
    }
}

/// The operating system's secure random source (`getrandom`).
#[derive(Clone, Copy, Debug, Default)]
pub struct OsRandom;

/// Bytes an [`OsRandom`] draws at once for ids, per thread.
const ID_BYTES: usize = 4096;

/// The longest id draw served from the buffer; longer ones read the OS directly.
const ID_DRAW_MAX: usize = 32;

/// One thread's bytes for ids: `buf[used..]` is not handed out yet.
struct IdBytes {
    buf: [u8; ID_BYTES],
    used: usize,
}

thread_local! {
    static IDS: std::cell::RefCell<IdBytes> = const {
        std::cell::RefCell::new(IdBytes { buf: [0; ID_BYTES], used: ID_BYTES })
    };
}

impl RandomSource for OsRandom {
    fn fill(&self, buf: &mut [u8]) {
        // The OS random source failing is not recoverable: ids and secrets must not be
        // guessable.
        getrandom::getrandom(buf).expect("the operating system's random source failed");
    }

    fn fill_id(&self, out: &mut [u8]) {
        if out.len() > ID_DRAW_MAX {
            return self.fill(out);
        }
        IDS.with_borrow_mut(|ids| {
            if ID_BYTES - ids.used < out.len() {
                self.fill(&mut ids.buf);
                ids.used = 0;
            }
            let taken = &mut ids.buf[ids.used..ids.used + out.len()];
            out.copy_from_slice(taken);
            // Handed-out bytes are not kept: no later read of this memory sees an id's bytes.
            taken.fill(0);
            ids.used += out.len();
        });
    }
}

/// `N` random bytes.
fn random<const N: usize>(random: &dyn RandomSource) -> [u8; N] {
    let mut buf = [0u8; N];
    random.fill(&mut buf);
    buf
}

/// `N` random bytes for an id.
fn random_id<const N: usize>(random: &dyn RandomSource) -> [u8; N] {
    let mut buf = [0u8; N];
    random.fill_id(&mut buf);
    buf
}

/// `N` random bytes for an id, as lowercase hex.
fn random_hex<const N: usize>(source: &dyn RandomSource) -> String {
    hex::encode(random_id::<N>(source))
}

/// A new webhook id (`wh_` + 96 random bits).
pub fn webhook_id(random: &dyn RandomSource) -> String {
    format!("wh_{}", random_hex::<12>(random))
}

/// A new event id (`evt_` + 96 random bits).
pub fn event_id(random: &dyn RandomSource) -> String {
    format!("evt_{}", random_hex::<12>(random))
}

/// A new fan-out made `now`: the time, then 80 random bits. Time first, so its records land
/// next to the newest ones in the store (where its outcomes soon update them), not at a
/// random place in a large tree.
pub fn fan_out(source: &dyn RandomSource, now: Timestamp) -> FanOutId {
    FanOutId::new(now, random_id(source))
}

/// A new test send's delivery: the one delivery of a fan-out of its own.
pub fn test_delivery_id(random: &dyn RandomSource, now: Timestamp) -> DeliveryId {
    fan_out(random, now).delivery(0)
}

/// A new signing secret: `whsec_` and 192 random bits in base64, as Standard Webhooks (and
/// Svix) show them, so the same secret serves either signature scheme.
pub fn secret(source: &dyn RandomSource) -> String {
    hallway_domain::signature::standard::secret_from_key(&random::<24>(source))
}

/// A new account API key (`hwk_` + 256 random bits), from the source's `fill`, never an id
/// buffer.
pub fn api_key(random: &dyn RandomSource) -> String {
    format!("hwk_{}", hex::encode(self::random::<32>(random)))
}

/// The stored form of an API key: SHA-256, hex. Keys are 256 random bits, so a fast hash is
/// enough (no password stretching is needed).
pub fn hash_api_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// Whether two secrets are equal, in time that does not depend on where they differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_is_whsec_and_24_random_bytes_in_base64() {
        let (a, b) = (secret(&OsRandom), secret(&OsRandom));
        assert_ne!(a, b);
        assert_eq!(a.len(), "whsec_".len() + 32, "{a}");
        let key = hallway_domain::signature::standard::key(&a).expect("base64");
        assert_eq!(key.len(), 24);
    }

    /// Counts the draws that reach the operating system's side of a source.
    struct Counted(std::sync::atomic::AtomicUsize);

    impl RandomSource for Counted {
        fn fill(&self, buf: &mut [u8]) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            OsRandom.fill(buf);
        }
    }

    #[test]
    fn ids_from_the_buffer_never_repeat_across_its_refills() {
        // 10,000 fan-outs take 100,000 bytes: some 24 refills of the thread's buffer.
        let now = Timestamp(1_790_000_000_000);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..10_000 {
            let random = fan_out(&OsRandom, now).to_bytes()[6..].to_vec();
            assert!(
                random.iter().any(|b| *b != 0),
                "drawn bytes, not the zeroed buffer"
            );
            assert!(seen.insert(random), "an id's random bits came out twice");
        }
    }

    #[test]
    fn secrets_and_keys_draw_their_own_bytes_and_ids_may_share_a_draw() {
        let counted = Counted(std::sync::atomic::AtomicUsize::new(0));
        let draws = || counted.0.load(std::sync::atomic::Ordering::Relaxed);
        secret(&counted);
        api_key(&counted);
        assert_eq!(draws(), 2);
        // A source without a buffer of its own draws once per id, as before.
        event_id(&counted);
        assert_eq!(draws(), 3);
        // 32 bytes is the longest an id's draw from the buffer may be.
        let mut long = [0u8; ID_DRAW_MAX + 1];
        OsRandom.fill_id(&mut long);
        assert!(long.iter().any(|b| *b != 0));
    }

    #[test]
    fn fan_outs_start_with_the_time_so_later_ones_sort_after_earlier_ones() {
        let now = Timestamp(1_790_000_000_000);
        let a = fan_out(&OsRandom, now);
        assert!(a < fan_out(&OsRandom, Timestamp(now.0 + 1)));
        assert_ne!(
            a.to_bytes()[6..],
            fan_out(&OsRandom, now).to_bytes()[6..],
            "80 random bits follow"
        );
        assert_ne!(
            test_delivery_id(&OsRandom, now),
            test_delivery_id(&OsRandom, now)
        );
    }
}
