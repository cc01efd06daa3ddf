//! The engine's side of `scripts/gguf_agreement.py`, which holds a real
//! GGUF file's logits against transformers loading the same file. Ignored
//! by default: it needs a real checkpoint (`scripts/fetch-models.sh`).
//!
//! Reads `$DSI_AGREEMENT_DIR/request.json` (`{"model": path, "windows":
//! [[ids]...], "sample_every": n}`), runs each window through the model on
//! the `cpu` backend with its quantized weights kept as stored, and writes
//! `engine.json` (each position's top-1 id) and `engine_rows.f32` (the
//! full logit rows of every `sample_every`-th position, little-endian).

use dsi_core::TokenId;
use dsi_models::checkpoint::Checkpoint;
use dsi_models::device::CpuBackend;
use dsi_models::transformer::{LoadedModel, Precision, WeightFormat};
use std::io::Write;
use std::path::PathBuf;

#[test]
#[ignore = "needs a real GGUF file: run scripts/gguf_agreement.py"]
fn logits_of_real_windows() {
    let dir = PathBuf::from(std::env::var("DSI_AGREEMENT_DIR").expect("DSI_AGREEMENT_DIR"));
    let request: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("request.json")).expect("request"))
            .expect("json");
    let model_path = PathBuf::from(request["model"].as_str().expect("model"));
    let every = request["sample_every"].as_u64().expect("sample_every") as usize;
    let checkpoint = Checkpoint::open(&model_path).expect("checkpoint");
    let device = burn::backend::flex::FlexDevice;
    let model = LoadedModel::<CpuBackend>::from_checkpoint(
        &checkpoint,
        &device,
        Precision::host(WeightFormat::F32),
        |_, _| {},
    )
    .expect("model")
    .with_host_threads(std::thread::available_parallelism().map_or(1, |n| n.get()));
    let mut top1 = Vec::new();
    let mut rows = std::io::BufWriter::new(
        std::fs::File::create(dir.join("engine_rows.f32")).expect("rows file"),
    );
    let mut position = 0usize;
    for window in request["windows"].as_array().expect("windows") {
        let ids: Vec<TokenId> = window
            .as_array()
            .expect("ids")
            .iter()
            .map(|v| v.as_u64().expect("id") as TokenId)
            .collect();
        let mut cache = model.new_cache(ids.len());
        let logits = model.forward(&ids, &mut cache).expect("forward");
        for i in 0..logits.rows() {
            let row = logits.row(i);
            top1.push(dsi_core::verify::argmax(row));
            if position.is_multiple_of(every) {
                for v in row {
                    rows.write_all(&v.to_le_bytes()).expect("write");
                }
            }
            position += 1;
        }
    }
    rows.flush().expect("flush");
    std::fs::write(
        dir.join("engine.json"),
        serde_json::json!({"top1": top1}).to_string(),
    )
    .expect("engine.json");
}
