//! Token counts when a provider reports none (a cut stream, a server that omits usage):
//! tiktoken for OpenAI-family models, and for others a documented approximation of one
//! token per four bytes of UTF-8 (rounded up), which tracks English prose within ~10-20 %.

/// Tokens in `text` for `model` (the upstream name, e.g. `gpt-4o-mini`).
pub fn count(model: &str, text: &str) -> u64 {
    if text.is_empty() {
        return 0;
    }
    if let Some(bpe) = openai_family(model) {
        return bpe.encode_ordinary(text).len() as u64;
    }
    approximate(text)
}

/// Usage counted by us for `request` sent to `model` (the upstream name): the prompt, and
/// what was generated.
pub fn estimate(model: &str, request: &super::ChatRequest, content: &str) -> super::Usage {
    super::Usage {
        input_tokens: count(model, &request.prompt_text()),
        output_tokens: count(model, content),
        cached_input_tokens: 0,
        estimated: true,
    }
}

/// One token per four bytes, rounded up.
pub fn approximate(text: &str) -> u64 {
    (text.len() as u64).div_ceil(4)
}

fn openai_family(model: &str) -> Option<&'static tiktoken_rs::CoreBPE> {
    let m = model.to_ascii_lowercase();
    let o200k = m.starts_with("gpt-4o")
        || m.starts_with("gpt-4.1")
        || m.starts_with("gpt-5")
        || m.starts_with("o1")
        || m.starts_with("o3")
        || m.starts_with("o4");
    if o200k {
        return Some(tiktoken_rs::o200k_base_singleton());
    }
    if m.starts_with("gpt-4") || m.starts_with("gpt-3.5") {
        return Some(tiktoken_rs::cl100k_base_singleton());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiktoken_for_openai_models_and_an_approximation_for_others() {
        assert_eq!(count("gpt-4o-mini", "hello world"), 2);
        assert_eq!(count("gpt-3.5-turbo", "hello world"), 2);
        assert_eq!(count("claude-sonnet-4-5", "hello world"), 3);
        assert_eq!(count("anything", ""), 0);
    }
}
