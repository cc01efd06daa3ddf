//! The page's entry points (wasm-bindgen): load the pair into WebGPU, then
//! generate with a callback that sees the text and the timeline as they
//! happen.
//!
//! ```js
//! import init, { Engine } from "./pkg/dsi_web.js";
//! await init();
//! const engine = await Engine.load({ "config.json": bytes, ... }, drafterFiles);
//! const result = await engine.generate({ prompt, mode: "dsi", lookahead: 5, targets: 2 },
//!   (event) => { /* {type: "tokens", text, tokens} or {type: "job", ...record} */ });
//! ```

use crate::options::GenerateOptions;
use crate::pair::{ModelFiles, Pair};
use crate::{Progress, WebError};
use dsi_models::device::{DType, WgpuBackend, init_webgpu};
use js_sys::{Function, Object, Promise, Reflect, Uint8Array};
use std::cell::Cell;
use std::rc::Rc;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

/// The pair on the page's WebGPU device.
#[wasm_bindgen]
pub struct Engine {
    inner: Rc<Inner>,
}

struct Inner {
    pair: Pair<WgpuBackend>,
    requests: Cell<u64>,
    adapter: String,
}

fn js_error(e: impl std::fmt::Display) -> JsValue {
    JsError::new(&e.to_string()).into()
}

/// A JS object `{ name: Uint8Array }` as model files.
fn files(object: &Object) -> Result<ModelFiles, JsValue> {
    let mut files = ModelFiles::new();
    for entry in Object::entries(object).iter() {
        let name = Reflect::get_u32(&entry, 0)?
            .as_string()
            .ok_or_else(|| js_error("a file name is not a string"))?;
        let bytes = Reflect::get_u32(&entry, 1)?;
        if !bytes.is_instance_of::<Uint8Array>() {
            return Err(js_error(format!(
                "{name}: expected a Uint8Array of its bytes"
            )));
        }
        files.insert(&name, Uint8Array::new(&bytes).to_vec());
    }
    Ok(files)
}

#[wasm_bindgen]
impl Engine {
    /// Sets up WebGPU and builds the target (and the drafter, unless
    /// `drafter` is null) from their files, in f32 (what every WebGPU
    /// adapter computes; SwiftShader has no f16).
    pub fn load(target: Object, drafter: Option<Object>) -> Promise {
        future_to_promise(async move {
            let target = files(&target)?;
            let drafter = drafter.as_ref().map(files).transpose()?;
            let (device, adapter) = init_webgpu().await;
            let pair = Pair::<WgpuBackend>::load(target, drafter, &device, DType::F32)
                .map_err(js_error)?;
            Ok(Engine {
                inner: Rc::new(Inner {
                    pair,
                    requests: Cell::new(0),
                    adapter,
                }),
            }
            .into())
        })
    }

    /// The adapter, the models' sizes and the context, as JSON.
    pub fn info(&self) -> String {
        let (target, drafter) = self.inner.pair.parameters();
        serde_json::json!({
            "adapter": self.inner.adapter,
            "target_parameters": target,
            "drafter_parameters": drafter,
            "context": self.inner.pair.context(),
        })
        .to_string()
    }

    /// Runs one generation (`options`: JSON of `GenerateOptions`), calling
    /// `on_event` with `{type: "tokens", tokens, text}` (the whole text so
    /// far) and `{type: "job", ...}` (a timeline record, the shape of the
    /// server's `/v1/dashboard/timeline`). Resolves to the outcome as JSON,
    /// with the text.
    pub fn generate(&self, options: String, on_event: Function) -> Promise {
        let inner = self.inner.clone();
        future_to_promise(async move {
            let options = GenerateOptions::from_json(&options).map_err(js_error)?;
            let request = inner.requests.get() + 1;
            inner.requests.set(request);
            let tokenizer = inner.pair.tokenizer();
            let mut all = Vec::new();
            let outcome = inner
                .pair
                .generate(&options, request, |progress| {
                    let event = match progress {
                        Progress::Tokens(tokens) => {
                            all.extend_from_slice(tokens);
                            serde_json::json!({
                                "type": "tokens",
                                "tokens": tokens,
                                "text": tokenizer.decode(&all).unwrap_or_default(),
                            })
                        }
                        Progress::Timeline(record) => {
                            let mut value = serde_json::to_value(record).unwrap_or_default();
                            value["type"] = "job".into();
                            value
                        }
                    };
                    // A throwing callback must not stop the generation.
                    let _ = on_event.call1(&JsValue::NULL, &JsValue::from_str(&event.to_string()));
                })
                .await
                .map_err(js_error)?;
            let text = tokenizer
                .decode(&outcome.tokens)
                .map_err(|e| js_error(WebError::from(e)))?;
            let mut value = serde_json::to_value(&outcome).map_err(js_error)?;
            value["text"] = text.into();
            Ok(JsValue::from_str(&value.to_string()))
        })
    }
}
