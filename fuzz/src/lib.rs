//! The fuzz harness: one function per target, each a thin call into conpaas-core that must not
//! panic and that checks the invariant the target is about. `fuzz_targets/*.rs` are one line
//! into here, and the main workspace's `tests/it/fuzz_corpus.rs` includes this file to replay
//! `corpus/` on stable without cargo-fuzz.

// A harness reports a broken invariant by panicking; that is what the fuzzer looks for.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::borrow::Cow;
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::OnceLock;

use conpaas_core::api::params::Params;
use conpaas_core::ca::{CertIdentity, CertInfo, VerifiedCsr};
use conpaas_core::config;
use conpaas_core::vpn::{self, SubnetArithmetic, VpnPlan, VpnSettings};
use ipnet::Ipv4Net;

/// The file name the `config` target parses under; every problem must point at it.
const CONFIG_PATH: &str = "fuzz.cfg";

/// Plans with at most this many candidate subnets are checked against a one-by-one scan.
const NAIVE_SCAN_LIMIT: u64 = 4096;

/// `config::parse_bytes` never panics, and a refusal locates every problem in the file parsed.
pub fn config(data: &[u8]) {
    let path = Path::new(CONFIG_PATH);
    match config::parse_bytes(path, data) {
        Ok(loaded) => assert_eq!(loaded.path, path),
        Err(config::Error::Invalid(problems)) => {
            assert!(!problems.is_empty(), "a refusal without a problem");
            for problem in &problems {
                assert_eq!(problem.location.file, path, "{problem}");
            }
        }
        // Parsing bytes reads no file and checks no URL outside a located problem.
        Err(other) => panic!("unlocated configuration error: {other}"),
    }
}

/// `VerifiedCsr::parse` (the body of `/ca/get_cert.php`) never panics.
pub fn csr(data: &[u8]) {
    if let Ok(csr) = VerifiedCsr::parse(data) {
        let _ = csr.requested_identity();
    }
}

/// `CertIdentity::parse` and `CertInfo::parse` never panic, and reading is deterministic.
pub fn cert_identity(data: &[u8]) {
    let first = CertIdentity::parse(data).ok();
    assert_eq!(CertIdentity::parse(data).ok(), first);
    let _ = CertInfo::parse(data);
}

/// `Params::parse` never panics, and the query string wins over the body.
///
/// The input is split at its first two NUL bytes into the query string, the content type and
/// the body: `a=1&b=2 \0 application/x-www-form-urlencoded \0 a=3`.
pub fn params(data: &[u8]) {
    let mut parts = data.splitn(3, |byte| *byte == 0);
    let query = String::from_utf8_lossy(parts.next().unwrap_or_default());
    let content_type: Option<Cow<'_, str>> = parts.next().map(String::from_utf8_lossy);
    let body = parts.next().unwrap_or_default().to_vec();
    let parsed = runtime().block_on(Params::parse(
        Some(&query),
        content_type.as_deref(),
        body.into(),
    ));
    let Ok(params) = parsed else { return };
    let mut seen: Vec<&str> = Vec::new();
    for pair in query.split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let plain = |text: &str| text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !plain(name) {
            // An escaped name may decode to a plain one below: stop checking.
            break;
        }
        if name.is_empty() || seen.contains(&name) {
            continue;
        }
        seen.push(name);
        if plain(value) {
            assert_eq!(params.get(name), Some(value), "query parameter {name}");
            assert_eq!(params.required(name).is_some(), !value.is_empty());
        }
    }
}

/// A runtime for the async parser; one per process, as building one per input is slow.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a current-thread runtime without IO drivers builds")
    })
}

/// `VpnPlan::new` never panics; an allocated subnet is a candidate of the plan inside the
/// network, overlaps none of the recorded subnets, is the lowest such candidate, and has a
/// manager address; a refusal means every candidate is taken.
///
/// Input: base address (4 bytes), prefix, service bits, flags (bit 0 legacy arithmetic, bit 1
/// clear the base's host bits, bit 2 break the netmask), then 5-byte records of existing
/// subnets whose first byte picks the kind: any network, one inside the plan's network, one
/// candidate, or a run of the first candidates.
pub fn vpn_plan(data: &[u8]) {
    let Some((head, records)) = data.split_first_chunk::<8>() else {
        return;
    };
    let [a, b, c, d, prefix, service_bits, flags, flip] = *head;
    let prefix = prefix % 33;
    let mut mask = prefix_mask(prefix);
    if flags & 4 != 0 {
        mask ^= 1 << (flip % 32);
    }
    let mut base = u32::from(Ipv4Addr::new(a, b, c, d));
    if flags & 2 != 0 {
        base &= mask;
    }
    let (base, netmask) = (Ipv4Addr::from(base), Ipv4Addr::from(mask));
    let settings =
        VpnSettings::from_keys(base, netmask, service_bits).arithmetic(if flags & 1 != 0 {
            SubnetArithmetic::Legacy
        } else {
            SubnetArithmetic::Documented
        });
    let Ok(plan) = VpnPlan::new(&settings) else {
        return;
    };
    let network = plan.network();
    let count = plan.services_per_application();
    assert!(count > 0, "a plan without candidates: {plan:?}");

    let mut existing: Vec<Ipv4Net> = Vec::new();
    for record in records.chunks_exact(5) {
        let [kind, w, x, y, z] = [record[0], record[1], record[2], record[3], record[4]];
        let number = u32::from_be_bytes([w, x, y, z]);
        let record_prefix = (kind >> 2) % 33;
        match kind % 4 {
            0 => existing.extend(Ipv4Net::new(Ipv4Addr::from(number), record_prefix).ok()),
            1 => {
                let host_bits = !prefix_mask(network.prefix_len());
                let inside = u32::from(network.network()) | (number & host_bits);
                existing.extend(Ipv4Net::new(Ipv4Addr::from(inside), record_prefix).ok());
            }
            2 => existing.extend(plan.candidate(u64::from(number) % count)),
            _ => {
                let run = (u64::from(number) % (count + 1)).min(NAIVE_SCAN_LIMIT);
                existing.extend((0..run).filter_map(|index| plan.candidate(index)));
            }
        }
    }

    let overlaps = |subnet: &Ipv4Net| {
        existing
            .iter()
            .any(|e| subnet.contains(&e.network()) || e.contains(&subnet.network()))
    };
    let naive = (count <= NAIVE_SCAN_LIMIT).then(|| plan.candidates().find(|c| !overlaps(c)));
    match plan.allocate(&existing) {
        Ok(subnet) => {
            assert!(network.contains(&subnet), "{subnet} outside {network}");
            assert_eq!(subnet.prefix_len(), plan.subnet_prefix());
            assert!(!overlaps(&subnet), "{subnet} overlaps a recorded subnet");
            let step = 32 - u32::from(plan.subnet_prefix());
            let offset = u32::from(subnet.network()) - u32::from(network.network());
            let index = u64::from(offset.checked_shr(step).unwrap_or(0));
            assert_eq!(plan.candidate(index), Some(subnet), "not a candidate");
            if index > 0 {
                let below = plan.candidate(index - 1).expect("candidates are dense");
                assert!(overlaps(&below), "{below} was free and lower than {subnet}");
            }
            if let Some(naive) = naive {
                assert_eq!(naive, Some(subnet));
            }
            plan.manager_vpn_config(subnet)
                .expect("an allocated subnet has a manager address");
        }
        Err(vpn::Error::Exhausted { total }) => {
            assert_eq!(total, count);
            if let Some(naive) = naive {
                assert_eq!(naive, None, "refused while a candidate was free");
            }
        }
        Err(other) => panic!("allocation failed other than by exhaustion: {other}"),
    }
}

/// The netmask of a prefix length (0..=32) as a number.
fn prefix_mask(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}
