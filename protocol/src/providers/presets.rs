//! Named presets for well-known OpenAI-compatible providers: default base URL, how the key is
//! sent, and the environment variables a configuration may take them from. Only data: config
//! validation resolves a preset name, the engine never reads the environment through here.
//!
//! Each base URL below was checked against the vendor's own documentation (cited per entry);
//! all of them include the version segment, so the chat endpoint is `{base_url}/chat/completions`.

use super::openai_compat::AuthStyle;

/// One OpenAI-compatible provider's defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Preset {
    /// Name used in configuration (`kind = "groq"`).
    pub name: &'static str,
    /// Default base URL, including the `/v1`-style version segment.
    pub base_url: &'static str,
    /// How the API key is sent.
    pub auth: AuthStyle,
    /// Environment variable that overrides the base URL.
    pub env_base_url: &'static str,
    /// Environment variable holding the API key.
    pub env_api_key: &'static str,
}

/// Every preset, in a stable order.
pub const PRESETS: &[Preset] = &[
    // OpenAI API reference, "Introduction": requests go to https://api.openai.com/v1 with
    // `Authorization: Bearer`; the official SDKs read OPENAI_API_KEY and OPENAI_BASE_URL.
    Preset {
        name: "openai",
        base_url: "https://api.openai.com/v1",
        auth: AuthStyle::Bearer,
        env_base_url: "OPENAI_BASE_URL",
        env_api_key: "OPENAI_API_KEY",
    },
    // Groq docs, "OpenAI Compatibility" (console.groq.com/docs/openai): base_url
    // https://api.groq.com/openai/v1, key from GROQ_API_KEY.
    Preset {
        name: "groq",
        base_url: "https://api.groq.com/openai/v1",
        auth: AuthStyle::Bearer,
        env_base_url: "GROQ_BASE_URL",
        env_api_key: "GROQ_API_KEY",
    },
    // Mistral AI API reference (docs.mistral.ai/api): server https://api.mistral.ai, chat at
    // /v1/chat/completions with Bearer authentication; key conventionally MISTRAL_API_KEY.
    Preset {
        name: "mistral",
        base_url: "https://api.mistral.ai/v1",
        auth: AuthStyle::Bearer,
        env_base_url: "MISTRAL_BASE_URL",
        env_api_key: "MISTRAL_API_KEY",
    },
    // Together AI docs, "OpenAI compatibility" (docs.together.ai/docs/inference/
    // openai-compatibility): base_url https://api.together.ai/v1 (the older api.together.xyz
    // host still answers), key from TOGETHER_API_KEY.
    Preset {
        name: "together",
        base_url: "https://api.together.ai/v1",
        auth: AuthStyle::Bearer,
        env_base_url: "TOGETHER_BASE_URL",
        env_api_key: "TOGETHER_API_KEY",
    },
    // DeepSeek API docs, "Your First API Call" (api-docs.deepseek.com): base_url
    // https://api.deepseek.com, and https://api.deepseek.com/v1 for OpenAI compatibility (the
    // v1 is not a model version); key from DEEPSEEK_API_KEY.
    Preset {
        name: "deepseek",
        base_url: "https://api.deepseek.com/v1",
        auth: AuthStyle::Bearer,
        env_base_url: "DEEPSEEK_BASE_URL",
        env_api_key: "DEEPSEEK_API_KEY",
    },
    // Fireworks docs, "OpenAI compatibility" and "Text Models" (docs.fireworks.ai/tools-sdks/
    // openai-compatibility): base_url https://api.fireworks.ai/inference/v1.
    Preset {
        name: "fireworks",
        base_url: "https://api.fireworks.ai/inference/v1",
        auth: AuthStyle::Bearer,
        env_base_url: "FIREWORKS_BASE_URL",
        env_api_key: "FIREWORKS_API_KEY",
    },
    // OpenRouter docs, "Quickstart" (openrouter.ai/docs/quickstart): base_url
    // https://openrouter.ai/api/v1 with `Authorization: Bearer <OPENROUTER_API_KEY>`.
    Preset {
        name: "openrouter",
        base_url: "https://openrouter.ai/api/v1",
        auth: AuthStyle::Bearer,
        env_base_url: "OPENROUTER_BASE_URL",
        env_api_key: "OPENROUTER_API_KEY",
    },
    // xAI docs, "Integrations" / OpenAI SDK (docs.x.ai/api/integrations): base URL
    // https://api.x.ai/v1, key from XAI_API_KEY.
    Preset {
        name: "xai",
        base_url: "https://api.x.ai/v1",
        auth: AuthStyle::Bearer,
        env_base_url: "XAI_BASE_URL",
        env_api_key: "XAI_API_KEY",
    },
    // vLLM docs, "OpenAI-Compatible Server": `vllm serve` listens on port 8000 and clients use
    // http://localhost:8000/v1. No key unless started with `--api-key`, which then expects
    // Bearer: with no key configured no header is sent, so Bearer covers both.
    Preset {
        name: "vllm",
        base_url: "http://127.0.0.1:8000/v1",
        auth: AuthStyle::Bearer,
        env_base_url: "VLLM_BASE_URL",
        env_api_key: "VLLM_API_KEY",
    },
    // Ollama docs, "OpenAI compatibility": base_url http://localhost:11434/v1/, the API key is
    // "required but ignored" by the SDK, so none is sent. (Ollama's own OLLAMA_HOST holds a
    // host without /v1, hence a separate variable.)
    Preset {
        name: "ollama",
        base_url: "http://127.0.0.1:11434/v1",
        auth: AuthStyle::None,
        env_base_url: "OLLAMA_BASE_URL",
        env_api_key: "OLLAMA_API_KEY",
    },
    // LM Studio docs, "OpenAI Compatible Endpoints" (lmstudio.ai/docs/api/openai-api): the
    // local server on port 1234, base URL http://localhost:1234/v1, no authentication by default.
    Preset {
        name: "lmstudio",
        base_url: "http://127.0.0.1:1234/v1",
        auth: AuthStyle::None,
        env_base_url: "LMSTUDIO_BASE_URL",
        env_api_key: "LMSTUDIO_API_KEY",
    },
];

/// The preset called `name` (exact, lowercase), if any.
pub fn preset(name: &str) -> Option<&'static Preset> {
    PRESETS.iter().find(|p| p.name == name)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn lookup_and_shape() {
        let groq = preset("groq").unwrap();
        assert_eq!(groq.base_url, "https://api.groq.com/openai/v1");
        assert_eq!(preset("ollama").unwrap().auth, AuthStyle::None);
        assert!(preset("nope").is_none());
        assert!(preset("OpenAI").is_none());
        let mut names: Vec<&str> = PRESETS.iter().map(|p| p.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), PRESETS.len(), "names are unique");
        for p in PRESETS {
            assert!(
                p.base_url.starts_with("https://") || p.base_url.starts_with("http://127.0.0.1:"),
                "{}: remote presets use TLS",
                p.name
            );
            assert!(!p.base_url.ends_with('/'), "{}", p.name);
            assert!(p.base_url.ends_with("/v1"), "{}", p.name);
            assert!(p.env_api_key.ends_with("_API_KEY"));
            assert!(p.env_base_url.ends_with("_BASE_URL"));
        }
    }
}
