//! Chat prompts: the model's own chat template (the Jinja `chat_template` of
//! `tokenizer_config.json`) when it has one, else a plain documented one.
//!
//! The plain template writes each message as `role: content` on its own
//! line and ends with `assistant:`, which is what a base model (such as the
//! bundled pair) continues most naturally.

use crate::error::ApiError;
use crate::openai::ChatMessage;
use minijinja::{Environment, Error, ErrorKind, context};

/// How a conversation becomes a prompt.
#[derive(Debug, Clone, Default)]
pub struct ChatTemplate {
    /// The Jinja source, if the model ships one.
    pub source: Option<String>,
    /// `bos_token` as the template sees it.
    pub bos_token: String,
    /// `eos_token` as the template sees it.
    pub eos_token: String,
}

impl ChatTemplate {
    /// Reads `chat_template`, `bos_token` and `eos_token` from the text of a
    /// `tokenizer_config.json`; a template given as a list of named variants
    /// uses the `default` one.
    pub fn from_tokenizer_config(json: &str) -> Result<Self, String> {
        let config: serde_json::Value = serde_json::from_str(json)
            .map_err(|e| format!("tokenizer_config.json is not valid JSON: {e}"))?;
        let token = |name: &str| match &config[name] {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Object(o) => o
                .get("content")
                .and_then(|c| c.as_str())
                .unwrap_or_default()
                .to_string(),
            _ => String::new(),
        };
        let source = match &config["chat_template"] {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Array(variants) => variants
                .iter()
                .find(|v| v["name"] == "default")
                .and_then(|v| v["template"].as_str())
                .map(str::to_string),
            _ => None,
        };
        Ok(Self {
            source,
            bos_token: token("bos_token"),
            eos_token: token("eos_token"),
        })
    }

    /// The prompt for `messages`, ready for the assistant's turn.
    pub fn render(&self, messages: &[ChatMessage]) -> Result<String, ApiError> {
        if messages.is_empty() {
            return Err(ApiError::invalid_param(
                "messages",
                "messages is empty: send at least one message",
            ));
        }
        let Some(source) = &self.source else {
            let mut prompt = String::new();
            for m in messages {
                prompt.push_str(&format!("{}: {}\n", m.role, m.content));
            }
            prompt.push_str("assistant:");
            return Ok(prompt);
        };
        let mut env = Environment::new();
        env.add_function(
            "raise_exception",
            |message: String| -> Result<String, Error> {
                Err(Error::new(ErrorKind::InvalidOperation, message))
            },
        );
        env.render_str(
            source,
            context! {
                messages => messages,
                add_generation_prompt => true,
                bos_token => &self.bos_token,
                eos_token => &self.eos_token,
            },
        )
        .map_err(|e| {
            ApiError::invalid_param(
                "messages",
                format!("the model's chat template refused these messages: {e}"),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages() -> Vec<ChatMessage> {
        vec![
            ChatMessage {
                role: "system".into(),
                content: "Be brief.".into(),
            },
            ChatMessage {
                role: "user".into(),
                content: "Hi".into(),
            },
        ]
    }

    #[test]
    fn content_may_be_a_list_of_text_parts() {
        let parts: ChatMessage = serde_json::from_str(
            r#"{"role": "user", "content": [{"type": "text", "text": "Hi "}, {"type": "text", "text": "there"}]}"#,
        )
        .unwrap();
        assert_eq!(parts.content, "Hi there");
        let image = serde_json::from_str::<ChatMessage>(
            r#"{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}"#,
        );
        assert!(image.unwrap_err().to_string().contains("text parts only"));
    }

    #[test]
    fn plain_template_without_a_model_template() {
        let prompt = ChatTemplate::default().render(&messages()).unwrap();
        assert_eq!(prompt, "system: Be brief.\nuser: Hi\nassistant:");
    }

    #[test]
    fn the_models_jinja_template_is_applied() {
        let config = r#"{
            "bos_token": "<s>", "eos_token": {"content": "</s>"},
            "chat_template": "{{ bos_token }}{% for m in messages %}{% if m.role == 'tool' %}{{ raise_exception('no tools') }}{% endif %}<|{{ m.role }}|>{{ m.content }}{{ eos_token }}{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"
        }"#;
        let template = ChatTemplate::from_tokenizer_config(config).unwrap();
        let prompt = template.render(&messages()).unwrap();
        assert_eq!(
            prompt,
            "<s><|system|>Be brief.</s><|user|>Hi</s><|assistant|>"
        );
        let tool = vec![ChatMessage {
            role: "tool".into(),
            content: "x".into(),
        }];
        let err = template.render(&tool).unwrap_err();
        assert!(err.message.contains("no tools"), "{}", err.message);
        assert!(template.render(&[]).is_err());
    }
}
