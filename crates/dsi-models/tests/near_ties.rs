//! Near-ties: on a checkpoint whose every greedy choice is a near-tie (the
//! LM head's rows paired within one part in 2^22, `NearTies`), the cpu
//! backend's own kernels (`Numerics::Fast`) give a position logits that
//! differ, alone, in a batch and in one prefill, by more than the gap
//! between its top two tokens, so its greedy token can depend on how the
//! forward was cut; the fixed-order kernels (`Numerics::Invariant`, the
//! default) give the same bits every way, so the same tokens.

use burn::tensor::DType;
use dsi_core::TokenId;
use dsi_core::cancel::CancelFlag;
use dsi_core::verify::argmax;
use dsi_models::checkpoint::{Checkpoint, write_near_ties};
use dsi_models::device::{CpuBackend, DeviceSpec};
use dsi_models::test_backends::runs_on;
use dsi_models::transformer::{BatchMember, LoadedModel, Numerics};
use std::path::Path;

const SEQUENCES: usize = 6;
const LENGTH: usize = 24;

/// The transformers fixture with its LM head's rows paired.
fn near_tie_checkpoint() -> Checkpoint {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/llama-gqa");
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("near-ties");
    write_near_ties(&fixture, &dir).expect("near-tie checkpoint")
}

fn sequence(seed: usize) -> Vec<TokenId> {
    (0..LENGTH)
        .map(|i| ((seed * 37 + i * 11 + 3) % 96) as TokenId)
        .collect()
}

fn host(t: burn::tensor::Tensor<CpuBackend, 2>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .expect("f32")
}

/// Every position's logits three ways: token by token alone, one step of
/// every sequence per batched forward, and each sequence in one prefill.
/// Indexed `[way][sequence * LENGTH + position]`.
fn three_ways(model: &LoadedModel<CpuBackend>) -> [Vec<Vec<f32>>; 3] {
    let never = CancelFlag::new();
    let vocab = model.config.vocab_size;
    let sequences: Vec<Vec<TokenId>> = (0..SEQUENCES).map(sequence).collect();
    let mut alone = Vec::new();
    for tokens in &sequences {
        let mut cache = model.new_cache(64);
        for &t in tokens {
            let logits = model.forward_until(&[t], &mut cache, 1, &never);
            alone.push(host(logits.expect("alone")));
        }
    }
    let mut batched = vec![Vec::new(); SEQUENCES * LENGTH];
    let mut caches: Vec<_> = (0..SEQUENCES).map(|_| model.new_cache(64)).collect();
    for position in 0..LENGTH {
        let members = caches
            .iter_mut()
            .zip(&sequences)
            .map(|(cache, tokens)| BatchMember {
                tokens: &tokens[position..=position],
                cache,
                rows: 1,
                cancel: &never,
            })
            .collect();
        for (s, logits) in model.forward_batch(members).into_iter().enumerate() {
            batched[s * LENGTH + position] = host(logits.expect("batched"));
        }
    }
    let mut prefilled = Vec::new();
    for tokens in &sequences {
        let mut cache = model.new_cache(64);
        let logits = host(
            model
                .forward_until(tokens, &mut cache, LENGTH, &never)
                .expect("prefill"),
        );
        prefilled.extend(logits.chunks(vocab).map(<[f32]>::to_vec));
    }
    [alone, batched, prefilled]
}

/// Positions whose top-two gap alone is smaller than how far another way
/// moves its logits, and positions whose greedy token another way changes.
fn near_ties_and_flips(ways: &[Vec<Vec<f32>>; 3]) -> (usize, usize) {
    let (mut near, mut flips) = (0, 0);
    for (i, alone) in ways[0].iter().enumerate() {
        let mut sorted = alone.clone();
        sorted.sort_by(|a, b| b.total_cmp(a));
        let gap = sorted[0] - sorted[1];
        let moved = ways[1..]
            .iter()
            .flat_map(|other| other[i].iter().zip(alone).map(|(a, b)| (a - b).abs()))
            .fold(0f32, f32::max);
        near += usize::from(gap < moved);
        flips += usize::from(
            ways[1..]
                .iter()
                .any(|other| argmax(&other[i]) != argmax(alone)),
        );
    }
    (near, flips)
}

#[test]
fn near_ties_keep_their_token_only_with_fixed_order_kernels() {
    if !runs_on(DeviceSpec::Cpu) {
        return;
    }
    let checkpoint = near_tie_checkpoint();
    let load = |numerics| {
        LoadedModel::<CpuBackend>::from_checkpoint(
            &checkpoint,
            &Default::default(),
            DType::F32,
            |_, _| {},
        )
        .expect("model")
        .with_host_threads(2)
        .with_numerics(numerics)
    };
    let positions = SEQUENCES * LENGTH;

    let fast = three_ways(&load(Numerics::Fast));
    let (near, flips) = near_ties_and_flips(&fast);
    eprintln!(
        "fast kernels: {near} of {positions} positions are near-ties below the rounding of another cut, {flips} change their greedy token"
    );
    assert!(
        near > 0 && flips > 0,
        "the checkpoint's pairs are close enough to change greedy tokens under the backend's kernels"
    );

    let invariant = three_ways(&load(Numerics::Invariant));
    assert_eq!(
        invariant[1], invariant[0],
        "batched: the same bits as alone"
    );
    assert_eq!(
        invariant[2], invariant[0],
        "one prefill: the same bits as token by token"
    );
    assert_eq!(near_ties_and_flips(&invariant), (0, 0));
}
