//! OpenAI's request and response schemas for `/v1/completions` and
//! `/v1/chat/completions`, plus dsi's optional extras (`mode`, `lookahead`,
//! `targets`) and the acceptance counts added to `usage`.

use crate::codec::TextCodec;
use crate::output::OutToken;
use serde::{Deserialize, Serialize};

/// `stop`: one string or several.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum StopField {
    /// One stop string.
    One(String),
    /// Several.
    Many(Vec<String>),
}

impl StopField {
    /// The stop strings.
    pub fn into_vec(self) -> Vec<String> {
        match self {
            StopField::One(s) => vec![s],
            StopField::Many(v) => v,
        }
    }
}

/// `prompt`: a string or token ids, or a list of either (of which one is
/// served per request).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum PromptField {
    /// The prompt text.
    Text(String),
    /// A batch of prompts (only one is served).
    Batch(Vec<String>),
    /// The prompt as token ids.
    Tokens(Vec<u32>),
    /// A batch of token-id prompts (only one is served).
    TokenBatch(Vec<Vec<u32>>),
}

/// `stream_options`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamOptions {
    /// Send a last chunk with `usage`.
    #[serde(default)]
    pub include_usage: bool,
}

/// The fields completions and chat share.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct CommonFields {
    /// The model name; must be the served one when given.
    pub model: Option<String>,
    /// New tokens at most.
    pub max_tokens: Option<u32>,
    /// OpenAI's newer name for `max_tokens` (chat).
    pub max_completion_tokens: Option<u32>,
    /// Sampling temperature; 0 is greedy.
    pub temperature: Option<f32>,
    /// Nucleus sampling mass.
    pub top_p: Option<f32>,
    /// Keep the k most likely tokens (an extension many servers accept).
    pub top_k: Option<u32>,
    /// Seed of the sampling randomness.
    pub seed: Option<u64>,
    /// Stop strings (up to 4).
    pub stop: Option<StopField>,
    /// Stream server-sent events.
    #[serde(default)]
    pub stream: bool,
    /// Streaming options.
    pub stream_options: Option<StreamOptions>,
    /// Choices wanted: only 1.
    pub n: Option<u32>,
    /// dsi: `auto`, `dsi`, `si` or `nonsi`.
    pub mode: Option<String>,
    /// dsi: drafts per verification job.
    pub lookahead: Option<u32>,
    /// dsi: target servers to use.
    pub targets: Option<u32>,
    /// dsi: verify sampled drafts with speculative sampling.
    #[serde(default)]
    pub speculative: bool,
    /// Accepted and ignored by design: this server keeps no per-user
    /// accounting.
    pub user: Option<String>,
    /// Subtracted from the logits of tokens already generated (-2..=2).
    pub presence_penalty: Option<f32>,
    /// Subtracted per earlier occurrence in the output (-2..=2).
    pub frequency_penalty: Option<f32>,
    /// vLLM's multiplicative penalty on tokens of the prompt and output
    /// (> 0; 1 is off).
    pub repetition_penalty: Option<f32>,
    /// Token id (as a string key) to a bias added to its logit (-100..=100).
    pub logit_bias: Option<std::collections::BTreeMap<String, f32>>,
    /// vLLM: end-of-sequence tokens are banned until this many were
    /// generated.
    pub min_tokens: Option<u32>,
    /// vLLM: generate past end-of-sequence tokens, until `max_tokens` or a
    /// stop string.
    #[serde(default)]
    pub ignore_eos: bool,
}

/// `POST /v1/completions`.
#[derive(Debug, Clone, Deserialize)]
pub struct CompletionRequest {
    /// The prompt.
    pub prompt: PromptField,
    /// Alternatives per token with each token's log probability (0..=20).
    pub logprobs: Option<u32>,
    /// Put the prompt before the completion in `text`.
    #[serde(default)]
    pub echo: bool,
    /// Candidates to choose from: only 1.
    pub best_of: Option<u32>,
    /// Text after the completion (insertion): not supported.
    pub suffix: Option<String>,
    /// The shared fields.
    #[serde(flatten)]
    pub common: CommonFields,
}

/// One chat message, as templates see it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user`, `assistant` (or `tool`).
    pub role: String,
    /// The text.
    #[serde(deserialize_with = "content_text")]
    pub content: String,
}

/// `content`: a string, or OpenAI's list of parts, of which only text parts
/// (`{"type": "text", "text": ...}`) can be served here; they are joined.
fn content_text<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Content {
        Text(String),
        Parts(Vec<Part>),
    }
    #[derive(Deserialize)]
    struct Part {
        #[serde(rename = "type")]
        kind: String,
        text: Option<String>,
    }
    match Content::deserialize(deserializer)? {
        Content::Text(text) => Ok(text),
        Content::Parts(parts) => parts
            .into_iter()
            .map(|part| match (part.kind.as_str(), part.text) {
                ("text", Some(text)) => Ok(text),
                (kind, _) => Err(serde::de::Error::custom(format!(
                    "messages: a content part of type {kind:?} is not supported: this server takes text parts only (no images, audio or files)"
                ))),
            })
            .collect(),
    }
}

/// `POST /v1/chat/completions`.
#[derive(Debug, Clone, Deserialize)]
pub struct ChatRequest {
    /// The conversation so far.
    pub messages: Vec<ChatMessage>,
    /// Return each token's log probability.
    #[serde(default)]
    pub logprobs: bool,
    /// Alternatives per token with `logprobs` (0..=20).
    pub top_logprobs: Option<u32>,
    /// Only `{"type": "text"}` is served.
    pub response_format: Option<serde_json::Value>,
    /// Tool calling: refused unless empty.
    pub tools: Option<Vec<serde_json::Value>>,
    /// Only `"none"` (no tools) is served.
    pub tool_choice: Option<serde_json::Value>,
    /// The shared fields.
    #[serde(flatten)]
    pub common: CommonFields,
}

/// `usage`, with dsi's acceptance and draft counts.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Usage {
    /// Tokens in the prompt.
    pub prompt_tokens: usize,
    /// Tokens generated.
    pub completion_tokens: usize,
    /// Their sum.
    pub total_tokens: usize,
    /// The algorithm that ran (at the end, under `auto`).
    pub mode: String,
    /// The policy that ran at the end: `nonsi`, `si k=4`, `dsi k=5 N=2`.
    pub policy: String,
    /// Tokens the drafter proposed.
    pub draft_tokens: u64,
    /// Drafts the target accepted.
    pub accepted_tokens: u64,
    /// Accepted over judged drafts: the acceptance rate `a` (0 without
    /// verdicts on drafts).
    pub acceptance_rate: f64,
    /// Verification jobs preempted by a rejection.
    pub preempted_jobs: u64,
    /// Milliseconds from arrival to the first token.
    pub ttft_ms: f64,
    /// The sampling seed used: the request's, or a fresh one drawn for it
    /// when it named none; send it back as `seed` to replay the response.
    pub seed: u64,
    /// What `auto` chose and why: the starting acceptance estimate and its
    /// source, the final estimate, and each decision with the predicted
    /// time per token of the best policy of every mode.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auto: Option<dsi_sched::stats::AutoStats>,
}

/// One token's log probability, as both endpoints render it.
#[derive(Debug, Clone, PartialEq)]
pub struct LogprobEntry {
    /// The token's text on its own.
    pub token: String,
    /// Its log probability under the target (raw logits' log-softmax).
    pub logprob: f32,
    /// Characters of completion text before it.
    pub text_offset: usize,
    /// The most likely tokens at its position, most likely first.
    pub top: Vec<(String, f32)>,
}

impl LogprobEntry {
    /// The entry of a released token (`None` without log probabilities).
    pub fn new(codec: &dyn TextCodec, token: &OutToken) -> Option<Self> {
        let logprobs = token.logprobs.as_ref()?;
        // A token that is part of a character decodes to U+FFFD, as in
        // other servers; `bytes` (chat) says which bytes it is.
        let text = |id| codec.decode(&[id]).unwrap_or_default();
        Some(Self {
            token: text(token.id),
            logprob: logprobs.logprob,
            text_offset: token.text_offset,
            top: logprobs.top.iter().map(|&(id, l)| (text(id), l)).collect(),
        })
    }
}

/// `logprobs` of a choice: the legacy completions shape (parallel lists)
/// or chat's (`content`, one object per token with its UTF-8 bytes).
fn logprobs_json(endpoint: Endpoint, entries: Option<&[LogprobEntry]>) -> serde_json::Value {
    let Some(entries) = entries else {
        return serde_json::Value::Null;
    };
    match endpoint {
        Endpoint::Completions => serde_json::json!({
            "tokens": entries.iter().map(|e| &e.token).collect::<Vec<_>>(),
            "token_logprobs": entries.iter().map(|e| e.logprob).collect::<Vec<_>>(),
            "top_logprobs": entries
                .iter()
                .map(|e| e.top.iter().map(|(t, l)| (t.clone(), serde_json::json!(l))).collect())
                .collect::<Vec<serde_json::Map<String, serde_json::Value>>>(),
            "text_offset": entries.iter().map(|e| e.text_offset).collect::<Vec<_>>(),
        }),
        Endpoint::Chat => {
            let entry = |token: &str, logprob: f32| serde_json::json!({"token": token, "logprob": logprob, "bytes": token.as_bytes()});
            let content: Vec<serde_json::Value> = entries
                .iter()
                .map(|e| {
                    let mut value = entry(&e.token, e.logprob);
                    value["top_logprobs"] = e.top.iter().map(|(t, l)| entry(t, *l)).collect();
                    value
                })
                .collect();
            serde_json::json!({ "content": content })
        }
    }
}

/// `finish_reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// An end-of-sequence token or a stop string.
    Stop,
    /// `max_tokens` reached.
    Length,
}

/// The response object's kind: completions or chat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `/v1/completions`.
    Completions,
    /// `/v1/chat/completions`.
    Chat,
}

impl Endpoint {
    /// The route.
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::Completions => "/v1/completions",
            Endpoint::Chat => "/v1/chat/completions",
        }
    }

    /// The path, for metrics labels.
    pub fn label(self) -> &'static str {
        match self {
            Endpoint::Completions => "completions",
            Endpoint::Chat => "chat",
        }
    }

    fn object(self, chunk: bool) -> &'static str {
        match (self, chunk) {
            (Endpoint::Completions, _) => "text_completion",
            (Endpoint::Chat, false) => "chat.completion",
            (Endpoint::Chat, true) => "chat.completion.chunk",
        }
    }

    fn id_prefix(self) -> &'static str {
        match self {
            Endpoint::Completions => "cmpl",
            Endpoint::Chat => "chatcmpl",
        }
    }
}

/// What identifies one response across its chunks.
#[derive(Debug, Clone)]
pub struct ResponseHead {
    /// The endpoint.
    pub endpoint: Endpoint,
    /// `cmpl-…` or `chatcmpl-…`.
    pub id: String,
    /// Unix seconds.
    pub created: u64,
    /// The served model.
    pub model: String,
}

impl ResponseHead {
    /// A head with a fresh id.
    pub fn new(endpoint: Endpoint, serial: u64, model: &str) -> Self {
        let created = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Self {
            endpoint,
            id: format!("{}-{created:x}{serial:06x}", endpoint.id_prefix()),
            created,
            model: model.to_string(),
        }
    }

    /// The whole (non-streamed) response.
    pub fn full(
        &self,
        text: &str,
        logprobs: Option<&[LogprobEntry]>,
        finish: FinishReason,
        usage: &Usage,
    ) -> serde_json::Value {
        let logprobs = logprobs_json(self.endpoint, logprobs);
        let choice = match self.endpoint {
            Endpoint::Completions => serde_json::json!({
                "index": 0, "text": text, "logprobs": logprobs, "finish_reason": finish,
            }),
            Endpoint::Chat => serde_json::json!({
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "logprobs": logprobs,
                "finish_reason": finish,
            }),
        };
        self.wrap(false, vec![choice], Some(usage))
    }

    /// A streamed chunk with new text (chat's first chunk carries the role).
    pub fn delta(
        &self,
        text: &str,
        logprobs: Option<&[LogprobEntry]>,
        first: bool,
    ) -> serde_json::Value {
        let logprobs = logprobs_json(self.endpoint, logprobs);
        let choice = match self.endpoint {
            Endpoint::Completions => serde_json::json!({
                "index": 0, "text": text, "logprobs": logprobs, "finish_reason": null,
            }),
            Endpoint::Chat => {
                let delta = if first {
                    serde_json::json!({"role": "assistant", "content": text})
                } else {
                    serde_json::json!({"content": text})
                };
                serde_json::json!({"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": null})
            }
        };
        self.wrap(true, vec![choice], None)
    }

    /// The streamed chunk that carries the finish reason.
    pub fn finish(&self, finish: FinishReason) -> serde_json::Value {
        let choice = match self.endpoint {
            Endpoint::Completions => serde_json::json!({
                "index": 0, "text": "", "logprobs": null, "finish_reason": finish,
            }),
            Endpoint::Chat => serde_json::json!({
                "index": 0, "delta": {}, "logprobs": null, "finish_reason": finish,
            }),
        };
        self.wrap(true, vec![choice], None)
    }

    /// The last streamed chunk when `include_usage` is set: no choices.
    pub fn usage_chunk(&self, usage: &Usage) -> serde_json::Value {
        self.wrap(true, Vec::new(), Some(usage))
    }

    fn wrap(
        &self,
        chunk: bool,
        choices: Vec<serde_json::Value>,
        usage: Option<&Usage>,
    ) -> serde_json::Value {
        let mut value = serde_json::json!({
            "id": self.id,
            "object": self.endpoint.object(chunk),
            "created": self.created,
            "model": self.model,
            "choices": choices,
        });
        if let Some(usage) = usage {
            value["usage"] = serde_json::to_value(usage).unwrap_or_default();
        }
        value
    }
}
