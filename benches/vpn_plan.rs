//! Benchmarks of VPN subnet allocation: empty, nearly full and huge plans.
//!
//! Run with `cargo bench --bench vpn_plan`; `naive_scan` is the candidate-by-
//! candidate loop 1.2.0 used, kept as the yardstick for the interval sweep.

// A bench whose setup is wrong must stop, not measure something else; and
// `criterion_group!` generates an undocumented `pub fn`.
#![allow(clippy::unwrap_used, missing_docs)]

use std::hint::black_box;
use std::net::Ipv4Addr;

use conpaas_core::vpn::{VpnPlan, VpnSettings};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ipnet::Ipv4Net;

fn plan(base: &str, netmask: &str, service_bits: u8) -> VpnPlan {
    let settings = VpnSettings::from_keys(
        base.parse().unwrap(),
        netmask.parse().unwrap(),
        service_bits,
    );
    VpnPlan::new(&settings).unwrap()
}

/// The first candidate overlapping no recorded subnet, checked one by one.
fn naive_scan(plan: &VpnPlan, existing: &[Ipv4Net]) -> Option<Ipv4Net> {
    plan.candidates().find(|candidate| {
        existing
            .iter()
            .all(|e| !candidate.contains(e) && !e.contains(candidate))
    })
}

/// 10.0.0.0/8 with 20 bits (a million /28s): the first 4000 taken in shuffled
/// order, a legacy-sized /20 over their tail, and 1000 more scattered above:
/// the first free subnet is 10.1.0.0/28, candidate 4096.
fn huge_case() -> (VpnPlan, Vec<Ipv4Net>) {
    let plan = plan("10.0.0.0", "255.0.0.0", 20);
    let mut existing: Vec<Ipv4Net> = plan.candidates().take(4000).collect();
    // A fixed LCG keeps the run reproducible without a rand dependency.
    let mut state = 0x2545_f491_u64;
    let mut next = move || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1);
        state >> 33
    };
    for i in (1..existing.len()).rev() {
        let j = usize::try_from(next()).unwrap() % (i + 1);
        existing.swap(i, j);
    }
    for _ in 0..1000 {
        let index = 8192 + next() % (plan.services_per_application() - 8192);
        existing.push(plan.candidate(index).unwrap());
    }
    existing.push(Ipv4Net::new(Ipv4Addr::new(10, 0, 240, 0), 20).unwrap());
    (plan, existing)
}

fn allocate(c: &mut Criterion) {
    let mut group = c.benchmark_group("allocate");

    let empty = plan("172.16.0.0", "255.240.0.0", 5);
    group.throughput(Throughput::Elements(1));
    group.bench_function("empty_12_bits_5", |b| {
        b.iter(|| empty.allocate(black_box(&[])))
    });

    // 31 of 32 taken, the free one last; recorded newest first as a query might return them.
    let nearly_full = plan("172.16.0.0", "255.240.0.0", 5);
    let mut taken: Vec<Ipv4Net> = nearly_full.candidates().take(31).collect();
    taken.reverse();
    assert_eq!(
        nearly_full.allocate(&taken).unwrap(),
        nearly_full.candidate(31).unwrap()
    );
    group.throughput(Throughput::Elements(taken.len() as u64));
    group.bench_function("nearly_full_12_bits_5", |b| {
        b.iter(|| nearly_full.allocate(black_box(&taken)))
    });

    let (huge, existing) = huge_case();
    let expected = huge.allocate(&existing).unwrap();
    assert_eq!(expected.to_string(), "10.1.0.0/28");
    assert_eq!(naive_scan(&huge, &existing), Some(expected));
    group.throughput(Throughput::Elements(existing.len() as u64));
    group.bench_with_input(
        BenchmarkId::new("huge_8_bits_20", existing.len()),
        &existing,
        |b, existing| b.iter(|| huge.allocate(black_box(existing))),
    );
    group.finish();

    let mut group = c.benchmark_group("allocate_naive_scan");
    group.sample_size(10);
    group.throughput(Throughput::Elements(existing.len() as u64));
    group.bench_with_input(
        BenchmarkId::new("huge_8_bits_20", existing.len()),
        &existing,
        |b, existing| b.iter(|| naive_scan(&huge, black_box(existing))),
    );
    group.finish();
}

/// The first `n` candidates of 10.0.0.0/8 in /28s, in a shuffled order: the next free one
/// is candidate `n`.
fn taken_first(plan: &VpnPlan, n: usize) -> Vec<Ipv4Net> {
    let mut existing: Vec<Ipv4Net> = plan.candidates().take(n).collect();
    let mut state = 0x9e37_79b9_u64;
    for i in (1..existing.len()).rev() {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1);
        let j = usize::try_from(state >> 33).unwrap() % (i + 1);
        existing.swap(i, j);
    }
    existing
}

/// The curve of issue 10's target: one more service in an application that has 2^8, 2^12
/// and 2^16 (under 100 µs).
fn allocate_curve(c: &mut Criterion) {
    let plan = plan("10.0.0.0", "255.0.0.0", 20);
    let mut group = c.benchmark_group("allocate_services");
    for bits in [8u32, 12, 16] {
        let n = 1usize << bits;
        let existing = taken_first(&plan, n);
        assert_eq!(
            plan.allocate(&existing).unwrap(),
            plan.candidate(n as u64).unwrap()
        );
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), &existing, |b, existing| {
            b.iter(|| plan.allocate(black_box(existing)))
        });
    }
    group.finish();
}

criterion_group!(benches, allocate, allocate_curve);
criterion_main!(benches);
