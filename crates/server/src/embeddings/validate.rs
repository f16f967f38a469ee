//! The embeddings request on the wire -> what the service embeds. Checks that
//! need no tokenizer happen here; the model's own rules (vocabulary, length)
//! are applied when the inputs are tokenized.

use switchyard_api::embeddings::{EmbeddingInput, EmbeddingRequest, EncodingFormat};

use crate::error::ApiError;

/// OpenAI's limit on inputs per request.
pub const MAX_INPUTS: usize = 2048;

/// The inputs of one request, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Inputs {
    Texts(Vec<String>),
    Tokens(Vec<Vec<u32>>),
}

impl Inputs {
    pub fn len(&self) -> usize {
        match self {
            Inputs::Texts(t) => t.len(),
            Inputs::Tokens(t) => t.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A checked embeddings request.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbedRequest {
    pub model: String,
    pub inputs: Inputs,
    pub format: EncodingFormat,
}

/// `dims`: the model's vector length, for the message refusing `dimensions`.
pub fn embedding_request(r: EmbeddingRequest, dims: usize) -> Result<EmbedRequest, ApiError> {
    if r.dimensions.is_some() {
        return Err(ApiError::invalid(
            "dimensions",
            format!(
                "The model `{}` does not support `dimensions`: its vectors always have {dims} dimensions.",
                r.model
            ),
        )
        .code("unsupported_parameter"));
    }
    let inputs = match r.input {
        EmbeddingInput::Text(t) => Inputs::Texts(vec![t]),
        EmbeddingInput::Texts(t) => Inputs::Texts(t),
        EmbeddingInput::Tokens(t) => Inputs::Tokens(vec![t]),
        EmbeddingInput::TokenLists(t) => Inputs::Tokens(t),
    };
    if inputs.is_empty() {
        return Err(ApiError::invalid("input", "`input` must hold at least one item."));
    }
    if inputs.len() > MAX_INPUTS {
        return Err(ApiError::invalid(
            "input",
            format!("`input` may hold at most {MAX_INPUTS} items, got {}.", inputs.len()),
        ));
    }
    let first_empty = match &inputs {
        Inputs::Texts(t) => t.iter().position(String::is_empty),
        Inputs::Tokens(t) => t.iter().position(Vec::is_empty),
    };
    if let Some(i) = first_empty {
        let what = match inputs {
            Inputs::Texts(_) if inputs.len() == 1 => "`input` is an empty string".to_string(),
            Inputs::Texts(_) => format!("`input[{i}]` is an empty string"),
            Inputs::Tokens(_) => format!("`input[{i}]` holds no token ids"),
        };
        return Err(ApiError::invalid(
            "input",
            format!("{what}; every input needs some content."),
        ));
    }
    Ok(EmbedRequest {
        model: r.model,
        inputs,
        format: r.encoding_format.unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(input: EmbeddingInput) -> EmbeddingRequest {
        EmbeddingRequest {
            model: "m".into(),
            input,
            encoding_format: None,
            dimensions: None,
            user: Some("someone".into()),
        }
    }

    fn param(r: EmbeddingRequest) -> Option<String> {
        embedding_request(r, 384).err().and_then(|e| e.param)
    }

    #[test]
    fn shapes_become_input_lists() {
        let ok = embedding_request(req(EmbeddingInput::Text("a".into())), 384).ok();
        assert_eq!(
            ok.map(|r| (r.inputs, r.format)),
            Some((Inputs::Texts(vec!["a".into()]), EncodingFormat::Float))
        );
        let ok = embedding_request(req(EmbeddingInput::Tokens(vec![1, 2])), 384).ok();
        assert_eq!(ok.map(|r| r.inputs), Some(Inputs::Tokens(vec![vec![1, 2]])));
    }

    #[test]
    fn refusals_name_the_parameter() {
        let mut r = req(EmbeddingInput::Text("a".into()));
        r.dimensions = Some(384);
        assert_eq!(param(r).as_deref(), Some("dimensions"));
        for bad in [
            EmbeddingInput::Text(String::new()),
            EmbeddingInput::Texts(vec![]),
            EmbeddingInput::Texts(vec!["a".into(), String::new()]),
            EmbeddingInput::Texts(vec!["a".into(); MAX_INPUTS + 1]),
            EmbeddingInput::Tokens(vec![]),
            EmbeddingInput::TokenLists(vec![vec![1], vec![]]),
        ] {
            assert_eq!(param(req(bad.clone())).as_deref(), Some("input"), "{bad:?}");
        }
        assert!(embedding_request(req(EmbeddingInput::Texts(vec!["a".into(); MAX_INPUTS])), 384).is_ok());
    }
}
