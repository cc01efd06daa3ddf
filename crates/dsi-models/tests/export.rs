//! A model written by `train::write_checkpoint` loads back through the
//! Hugging Face loader with the same logits (f32 storage: exactly), so the
//! stacked q/k/v and gate/up projections are split back in the right order.
#![cfg(feature = "train")]

use dsi_models::checkpoint::Checkpoint;
use dsi_models::device::CpuBackend;
use dsi_models::train::{StoreDtype, write_checkpoint};
use dsi_models::transformer::LoadedModel;
use std::path::Path;

#[test]
fn a_written_checkpoint_loads_back_with_the_same_logits() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    for name in ["llama-gqa", "llama-bf16-sharded"] {
        let original = Checkpoint::open(&fixtures.join(name)).expect("fixture");
        let device = Default::default();
        let model = LoadedModel::<CpuBackend>::from_checkpoint(
            &original,
            &device,
            dsi_models::device::DType::F32,
            |_, _| {},
        )
        .expect("model");
        let dir = std::env::temp_dir().join(format!("dsi-export-{name}-{}", std::process::id()));
        for store in [StoreDtype::F32, StoreDtype::F16, StoreDtype::Bf16] {
            write_checkpoint(&dir, &model.model, &model.config, store).expect("written");
            std::fs::copy(
                original.path.join("tokenizer.json"),
                dir.join("tokenizer.json"),
            )
            .expect("tokenizer");
            let reread = Checkpoint::open(&dir).expect("reads back");
            assert_eq!(reread.config.num_layers, model.config.num_layers);
            let back = LoadedModel::<CpuBackend>::from_checkpoint(
                &reread,
                &device,
                dsi_models::device::DType::F32,
                |_, _| {},
            )
            .expect("loads back");
            let prompt = original
                .tokenizer
                .encode("def f(x): return x")
                .expect("ids");
            let a = model
                .forward(&prompt, &mut model.new_cache(64))
                .expect("logits");
            let b = back
                .forward(&prompt, &mut back.new_cache(64))
                .expect("logits");
            let scale = a.values.iter().fold(0f32, |m, v| m.max(v.abs()));
            let diff = a
                .values
                .iter()
                .zip(&b.values)
                .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
            let bound = match store {
                StoreDtype::F32 => 1e-6,
                StoreDtype::F16 => 1e-2,
                StoreDtype::Bf16 => 4e-2,
            };
            assert!(diff <= bound * scale, "{name} {store:?}: {diff} vs {scale}");
        }
        std::fs::remove_dir_all(&dir).ok();
    }
}
