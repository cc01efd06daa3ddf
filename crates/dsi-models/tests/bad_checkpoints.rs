//! Broken checkpoints give errors that name the file, the tensor or the
//! field, and what was expected, never a panic.

use burn::tensor::DType;
use dsi_models::ModelError;
use dsi_models::checkpoint::Checkpoint;
use dsi_models::device::NdarrayBackend;
use dsi_models::transformer::LoadedModel;
use std::path::{Path, PathBuf};

/// A scratch copy of the `llama-gqa` fixture that a test may break.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Self {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/llama-gqa");
        let dir = std::env::temp_dir().join(format!("dsi-bad-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        for entry in std::fs::read_dir(src).expect("fixture") {
            let entry = entry.expect("entry");
            std::fs::copy(entry.path(), dir.join(entry.file_name())).expect("copy");
        }
        Self(dir)
    }

    fn edit(&self, file: &str, f: impl FnOnce(Vec<u8>) -> Vec<u8>) {
        let path = self.0.join(file);
        let bytes = std::fs::read(&path).expect("read");
        std::fs::write(&path, f(bytes)).expect("write");
    }

    fn edit_config(&self, from: &str, to: &str) {
        self.edit("config.json", |b| {
            let text = String::from_utf8(b).expect("utf8");
            assert!(text.contains(from), "config has {from}");
            text.replace(from, to).into_bytes()
        });
    }

    /// Opens the checkpoint and builds the model on the CPU.
    fn load(&self) -> Result<(), ModelError> {
        let checkpoint = Checkpoint::open(&self.0)?;
        let device = burn::backend::ndarray::NdArrayDevice::Cpu;
        LoadedModel::<NdarrayBackend>::from_checkpoint(&checkpoint, &device, DType::F32, |_, _| {})
            .map(|_| ())
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn error_of(scratch: &Scratch) -> String {
    scratch
        .load()
        .expect_err("the broken checkpoint is refused")
        .to_string()
}

#[test]
fn the_intact_copy_loads() {
    Scratch::new("intact").load().expect("loads");
}

#[test]
fn missing_tensor_is_named() {
    let s = Scratch::new("missing-tensor");
    // Rename a tensor in the header (same length, so offsets stay valid).
    s.edit("model.safetensors", |b| {
        replace_once(b, b"model.norm.weight", b"model.norx.weight")
    });
    let err = error_of(&s);
    assert!(
        err.contains("model.norm.weight") && err.contains("missing"),
        "{err}"
    );
}

#[test]
fn wrong_shape_names_tensor_and_both_shapes() {
    let s = Scratch::new("wrong-shape");
    s.edit_config("\"num_key_value_heads\": 2", "\"num_key_value_heads\": 4");
    let err = error_of(&s);
    assert!(
        err.contains("k_proj.weight") && err.contains("[32, 64]") && err.contains("[64, 64]"),
        "{err}"
    );
}

#[test]
fn config_and_weights_disagreeing_on_vocabulary() {
    let s = Scratch::new("vocab");
    s.edit_config("\"vocab_size\": 320", "\"vocab_size\": 300");
    let err = error_of(&s);
    assert!(
        err.contains("embed_tokens") && err.contains("[320, 64]") && err.contains("[300, 64]"),
        "{err}"
    );
}

#[test]
fn truncated_safetensors_is_reported() {
    let s = Scratch::new("truncated");
    s.edit("model.safetensors", |mut b| {
        b.truncate(b.len() / 2);
        b
    });
    let err = error_of(&s);
    assert!(
        err.contains("model.safetensors") && err.contains("truncated"),
        "{err}"
    );
}

#[test]
fn garbage_safetensors_is_reported() {
    let s = Scratch::new("garbage");
    s.edit("model.safetensors", |_| b"not a safetensors file".to_vec());
    let err = error_of(&s);
    assert!(err.contains("model.safetensors"), "{err}");
}

#[test]
fn unknown_architecture_is_refused() {
    let s = Scratch::new("arch");
    s.edit_config("\"model_type\": \"llama\"", "\"model_type\": \"gpt2\"");
    s.edit_config("\"LlamaForCausalLM\"", "\"GPT2LMHeadModel\"");
    let err = error_of(&s);
    assert!(err.contains("model_type") && err.contains("gpt2"), "{err}");
}

#[test]
fn missing_tokenizer_is_reported() {
    let s = Scratch::new("tokenizer");
    std::fs::remove_file(s.0.join("tokenizer.json")).expect("remove");
    let err = error_of(&s);
    assert!(
        err.contains("tokenizer.json") && err.contains("missing"),
        "{err}"
    );
}

#[test]
fn missing_weights_and_config_are_reported() {
    let s = Scratch::new("no-weights");
    std::fs::remove_file(s.0.join("model.safetensors")).expect("remove");
    assert!(error_of(&s).contains("model.safetensors"));
    let s = Scratch::new("no-config");
    std::fs::remove_file(s.0.join("config.json")).expect("remove");
    assert!(error_of(&s).contains("config.json"));
    let s = Scratch::new("bad-config");
    s.edit("config.json", |_| b"{\"model_type\": ".to_vec());
    assert!(error_of(&s).contains("config.json"));
}

#[test]
fn unsupported_dtype_is_named() {
    let s = Scratch::new("dtype");
    // F32 -> I32 keeps the byte size, so only the dtype is wrong.
    s.edit("model.safetensors", |b| {
        replace_first_after(b, b"model.norm.weight", b"\"F32\"", b"\"I32\"")
    });
    let err = error_of(&s);
    assert!(
        err.contains("model.norm.weight") && err.contains("I32"),
        "{err}"
    );
}

fn replace_once(mut bytes: Vec<u8>, from: &[u8], to: &[u8]) -> Vec<u8> {
    let at = find(&bytes, from, 0).expect("pattern in file");
    bytes[at..at + to.len()].copy_from_slice(to);
    bytes
}

fn replace_first_after(mut bytes: Vec<u8>, anchor: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let start = find(&bytes, anchor, 0).expect("anchor");
    let at = find(&bytes, from, start).expect("pattern after anchor");
    bytes[at..at + to.len()].copy_from_slice(to);
    bytes
}

fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    haystack[from..]
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|i| i + from)
}
