//! The `--mode auto` chooser on synthetic cost profiles: what it picks on
//! independent devices, on shared cores and with a useless drafter, and
//! how it follows an acceptance rate that drifts mid-request.

use dsi_core::rng::SplitMix64;
use dsi_core::schedule::{Mode, Policy};
use dsi_core::sim::min_servers;
use dsi_core::tune::{Chooser, CostProfile, Space, Table};
use std::sync::Arc;

/// The paper's Phi-3 MBPP latencies on servers that share nothing.
fn independent() -> CostProfile {
    CostProfile::independent(vec![100.2; 11], 3.3, 7)
}

/// Two servers and a drafter on one processor: two target jobs at once run
/// at half speed, the drafter beside them slows everything further, and a
/// verification's extra rows cost compute.
fn shared_cores(servers: usize) -> CostProfile {
    let rows = (1..=11).map(|r| 2.0 + 0.15 * (r - 1) as f64).collect();
    let mut p = CostProfile::independent(rows, 0.5, servers);
    p.target_slowdown = (1..=servers).map(|j| j as f64).collect();
    p.target_slowdown_with_drafter = (1..=servers).map(|j| j as f64 + 0.4).collect();
    p.drafter_slowdown = (0..=servers).map(|j| 1.0 + j as f64).collect();
    p
}

fn space(servers: usize) -> Space {
    Space {
        max_k: Space::DEFAULT_MAX_K,
        servers,
        drafter: true,
    }
}

#[test]
fn independent_servers_and_a_good_drafter_choose_dsi_with_enough_servers() {
    let profile = independent();
    let table = Table::build(&profile, space(7));
    let best = table.best(0.8);
    assert_eq!(best.policy.mode, Mode::Dsi, "{best:?}");
    let needed = min_servers(best.policy.k, profile.c()).min(7);
    assert!(best.policy.servers >= needed, "{best:?} needs {needed}");
    // And it is clearly faster than the best SI and non-SI.
    let modes = table.best_per_mode(0.8);
    assert!(
        modes
            .iter()
            .all(|r| r.policy.mode == Mode::Dsi || r.ms_per_token > best.ms_per_token * 1.2),
        "{modes:?}"
    );
}

#[test]
fn shared_cores_do_not_choose_dsi_with_many_servers() {
    let table = Table::build(&shared_cores(4), space(4));
    for a in [0.3, 0.6, 0.8, 0.95] {
        let best = table.best(a).policy;
        assert!(
            best.mode != Mode::Dsi || best.servers <= 2,
            "a = {a}: {best}"
        );
    }
}

#[test]
fn a_useless_drafter_chooses_nonsi() {
    for profile in [independent(), shared_cores(2)] {
        let table = Table::build(&profile, space(profile.target_slowdown.len()));
        assert_eq!(table.best(0.0).policy.mode, Mode::NonSi);
        assert_eq!(table.best(0.01).policy.mode, Mode::NonSi);
    }
}

/// Feeds one epoch: drafts accepted with probability `a` until the first
/// rejection (the epoch's end).
fn epoch(chooser: &mut Chooser, draws: &mut SplitMix64, a: f64) -> Option<Policy> {
    let mut accepted = 0;
    while draws.next_open01() < a && accepted < 64 {
        accepted += 1;
    }
    chooser.observe(accepted, 1)
}

#[test]
fn drift_switches_within_a_bounded_number_of_epochs_and_back() {
    // On shared cores a good drafter makes SI the fastest, a useless one
    // non-SI (DSI's extra jobs only compete for the cores).
    let table = Arc::new(Table::build(&shared_cores(2), space(2)));
    let mut chooser = Chooser::new(Arc::clone(&table), 0.9);
    let mut draws = SplitMix64::new(5);
    assert!(chooser.policy().mode.drafts(), "{}", chooser.policy());
    for _ in 0..40 {
        epoch(&mut chooser, &mut draws, 0.9);
    }
    assert!(chooser.policy().mode.drafts(), "{:?}", chooser.decisions());
    let before = chooser.decisions().len();
    // The drafter turns useless: non-SI within 40 epochs.
    let mut epochs = 0;
    while chooser.policy().mode != Mode::NonSi {
        epoch(&mut chooser, &mut draws, 0.1);
        epochs += 1;
        assert!(epochs <= 40, "still {} after 40 epochs", chooser.policy());
    }
    // Non-SI drafts nothing, so the estimate moves only while something
    // drafts: a non-SI request is re-probed by the driver; here the
    // decisions of a probe are fed directly. Back to drafting within 40.
    let mut epochs = 0;
    while !chooser.policy().mode.drafts() {
        epoch(&mut chooser, &mut draws, 0.9);
        epochs += 1;
        assert!(epochs <= 40, "still {} after 40 epochs", chooser.policy());
    }
    // It does not flap while the rate holds.
    let settled = chooser.decisions().len();
    assert!(settled >= before + 2);
    for _ in 0..100 {
        epoch(&mut chooser, &mut draws, 0.9);
    }
    assert!(
        chooser.decisions().len() <= settled + 2,
        "{:?}",
        chooser.decisions()
    );
}

#[test]
fn the_rate_matters_on_shared_cores_not_on_free_servers() {
    // Free servers: DSI wins at every rate, so no probe is worth its time.
    assert!(!Table::build(&independent(), space(7)).acceptance_matters());
    // Shared cores: non-SI at low rates, SI at high ones.
    assert!(Table::build(&shared_cores(2), space(2)).acceptance_matters());
}

#[test]
fn a_saved_table_comes_back_only_into_its_own_space() {
    let built = Table::build(&shared_cores(2), space(2));
    let columns = built.columns();
    let back = Table::from_columns(shared_cores(2), space(2), columns.clone()).unwrap();
    for a in [0.0, 0.37, 0.8, 1.0] {
        assert_eq!(back.ranked(a), built.ranked(a));
    }
    // Another pool's space (more servers): other policies, refused.
    assert!(Table::from_columns(shared_cores(3), space(3), columns.clone()).is_none());
    let mut short = columns;
    short.pop();
    assert!(Table::from_columns(shared_cores(2), space(2), short).is_none());
}
