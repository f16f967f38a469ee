//! Vectors -> OpenAI's embeddings response, as JSON numbers or base64.

use base64::Engine as _;
use switchyard_api::embeddings::{Embedding, EmbeddingResponse, EmbeddingUsage, EmbeddingVector, EncodingFormat};

use super::Embedded;

pub fn response(model: String, embedded: Embedded, format: EncodingFormat) -> EmbeddingResponse {
    let tokens = u32::try_from(embedded.tokens).unwrap_or(u32::MAX);
    let data = embedded
        .vectors
        .into_iter()
        .enumerate()
        .map(|(index, v)| Embedding {
            object: "embedding".into(),
            index: index as u32,
            embedding: match format {
                EncodingFormat::Float => EmbeddingVector::Float(v),
                EncodingFormat::Base64 => EmbeddingVector::Base64(base64_f32(&v)),
            },
        })
        .collect();
    EmbeddingResponse {
        object: "list".into(),
        data,
        model,
        usage: EmbeddingUsage {
            prompt_tokens: tokens,
            total_tokens: tokens,
        },
    }
}

/// The vector's little-endian `f32` bytes in standard base64: what OpenAI
/// sends and its SDKs decode (`np.frombuffer(..., dtype="float32")`).
pub fn base64_f32(v: &[f32]) -> String {
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_is_little_endian_f32() {
        // 1.0f32 = 0x3f800000 -> bytes 00 00 80 3f.
        assert_eq!(base64_f32(&[1.0]), "AACAPw==");
        assert_eq!(base64_f32(&[]), "");
    }

    #[test]
    fn usage_counts_tokens_and_indexes_follow_input_order() {
        let r = response(
            "m".into(),
            Embedded {
                vectors: vec![vec![0.5], vec![-0.5]],
                tokens: 7,
            },
            EncodingFormat::Float,
        );
        assert_eq!(
            r.usage,
            EmbeddingUsage {
                prompt_tokens: 7,
                total_tokens: 7
            }
        );
        assert_eq!(r.data[1].index, 1);
        assert_eq!(r.data[1].embedding, EmbeddingVector::Float(vec![-0.5]));
        assert_eq!(r.object, "list");
    }
}
