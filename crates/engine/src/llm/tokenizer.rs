//! The byte-level BPE tokenizer, built from the token and merge lists in the
//! GGUF metadata (these models ship no tokenizer.json).
//!
//! Encoding uses the `tokenizers` crate. Decoding is a lookup table from id to
//! bytes, so streaming can hand out bytes token by token and join split UTF-8
//! characters itself.

use std::collections::HashMap;

use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::{AddedToken, PreTokenizerWrapper, Tokenizer};

use super::gguf::LoadedGguf;
use super::LlmError;

/// GGUF token types (`tokenizer.ggml.token_type`).
const TOKEN_TYPE_CONTROL: i32 = 3;
const TOKEN_TYPE_USER_DEFINED: i32 = 4;

pub struct GgufTokenizer {
    inner: Tokenizer,
    /// Bytes of each token; control tokens map to nothing.
    pieces: Vec<Vec<u8>>,
    special: Vec<bool>,
    eos: u32,
    bos: Option<u32>,
    add_bos: bool,
    tokens: Vec<String>,
}

fn tk_err(e: impl std::fmt::Display) -> LlmError {
    LlmError::Tokenizer(e.to_string())
}

impl GgufTokenizer {
    pub fn from_gguf(gguf: &LoadedGguf) -> Result<Self, LlmError> {
        let model = gguf.string("tokenizer.ggml.model")?;
        if model != "gpt2" {
            return Err(LlmError::Tokenizer(format!(
                "tokenizer model {model:?} is not supported yet (only gpt2 byte-level BPE)"
            )));
        }
        let pre = gguf.string("tokenizer.ggml.pre").unwrap_or("default").to_string();
        let tokens = string_list(gguf, "tokenizer.ggml.tokens")?;
        let merges = string_list(gguf, "tokenizer.ggml.merges")?;
        let types: Vec<i32> = match gguf.get("tokenizer.ggml.token_type") {
            Some(v) => v
                .to_vec()
                .map_err(tk_err)?
                .iter()
                .map(|t| t.to_i32().unwrap_or(1))
                .collect(),
            None => vec![1; tokens.len()],
        };
        let vocab: HashMap<String, u32> = tokens.iter().enumerate().map(|(i, t)| (t.clone(), i as u32)).collect();
        let merges = merges
            .iter()
            .map(|m| match m.split_once(' ') {
                Some((a, b)) => Ok((a.to_string(), b.to_string())),
                None => Err(LlmError::Tokenizer(format!("bad merge {m:?}"))),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let bpe = BPE::builder()
            .vocab_and_merges(vocab.into_iter().collect::<tokenizers::models::bpe::Vocab>(), merges)
            .build()
            .map_err(tk_err)?;
        let mut inner = Tokenizer::new(bpe);
        inner.with_pre_tokenizer(Some(pre_tokenizer(&pre)?));
        inner.with_decoder(Some(ByteLevelDecoder::default()));
        let special: Vec<bool> = (0..tokens.len())
            .map(|i| matches!(types.get(i), Some(&TOKEN_TYPE_CONTROL) | Some(&TOKEN_TYPE_USER_DEFINED)))
            .collect();
        let added: Vec<AddedToken> = tokens
            .iter()
            .zip(&special)
            .filter(|(_, s)| **s)
            .map(|(t, _)| AddedToken::from(t.clone(), true))
            .collect();
        inner.add_special_tokens(added).map_err(tk_err)?;

        let decode_byte = byte_decoder();
        let pieces = tokens
            .iter()
            .zip(&special)
            .map(|(t, s)| {
                if *s {
                    Vec::new()
                } else {
                    t.chars()
                        .map(|c| decode_byte.get(&c).copied().unwrap_or(b'?'))
                        .collect()
                }
            })
            .collect();
        let eos = gguf.u32("tokenizer.ggml.eos_token_id")?;
        let bos = gguf.u32("tokenizer.ggml.bos_token_id").ok();
        let add_bos = gguf
            .get("tokenizer.ggml.add_bos_token")
            .and_then(|v| v.to_bool().ok())
            .unwrap_or(false);
        Ok(Self {
            inner,
            pieces,
            special,
            eos,
            bos,
            add_bos,
            tokens,
        })
    }

    /// Encodes text; special tokens written in the text (`<|im_start|>`) are
    /// recognised, as llama.cpp's server does. Adds bos when the model asks.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, LlmError> {
        let enc = self.inner.encode(text, false).map_err(tk_err)?;
        let mut ids = Vec::with_capacity(enc.len() + 1);
        if self.add_bos {
            ids.extend(self.bos);
        }
        ids.extend_from_slice(enc.get_ids());
        Ok(ids)
    }

    /// The bytes a token stands for; empty for control tokens.
    pub fn piece(&self, id: u32) -> &[u8] {
        self.pieces.get(id as usize).map_or(&[], |p| p.as_slice())
    }

    /// Decodes ids to text, skipping control tokens.
    pub fn decode(&self, ids: &[u32]) -> String {
        let bytes: Vec<u8> = ids.iter().flat_map(|&id| self.piece(id).iter().copied()).collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    pub fn eos(&self) -> u32 {
        self.eos
    }

    pub fn is_special(&self, id: u32) -> bool {
        self.special.get(id as usize).copied().unwrap_or(false)
    }

    pub fn vocab_size(&self) -> usize {
        self.pieces.len()
    }

    /// The token's text as stored in the vocabulary (for templates).
    pub fn token_text(&self, id: u32) -> Option<&str> {
        self.tokens.get(id as usize).map(String::as_str)
    }
}

fn string_list(gguf: &LoadedGguf, key: &str) -> Result<Vec<String>, LlmError> {
    let list = match gguf.get(key) {
        Some(v) => v.to_vec().map_err(|e| LlmError::Tokenizer(format!("{key}: {e}")))?,
        None => return Err(LlmError::Tokenizer(format!("missing {key}"))),
    };
    list.iter()
        .map(|v| {
            v.to_string()
                .cloned()
                .map_err(|e| LlmError::Tokenizer(format!("{key}: {e}")))
        })
        .collect()
}

/// The pre-tokenizer for a GGUF `tokenizer.ggml.pre` name. `smollm` (like
/// `starcoder`, `refact`) splits every digit apart before the GPT-2 regex and
/// adds no prefix space.
fn pre_tokenizer(pre: &str) -> Result<Sequence, LlmError> {
    let byte_level = PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, true, true));
    match pre {
        "smollm" | "starcoder" | "refact" | "codeshell" => Ok(Sequence::new(vec![
            PreTokenizerWrapper::Digits(Digits::new(true)),
            byte_level,
        ])),
        "gpt2" | "default" => Ok(Sequence::new(vec![byte_level])),
        other => Err(LlmError::Tokenizer(format!(
            "pre-tokenizer {other:?} is not supported yet"
        ))),
    }
}

/// GPT-2's byte-to-character table, inverted: printable Latin-1 bytes stand
/// for themselves, the rest were shifted to code points from 256 up.
fn byte_decoder() -> HashMap<char, u8> {
    let mut map = HashMap::with_capacity(256);
    let mut shifted = 0u32;
    for b in 0u32..=255 {
        let printable = (0x21..=0x7e).contains(&b) || (0xa1..=0xac).contains(&b) || (0xae..=0xff).contains(&b);
        let c = if printable {
            b
        } else {
            shifted += 1;
            255 + shifted
        };
        if let Some(ch) = char::from_u32(c) {
            map.insert(ch, b as u8);
        }
    }
    map
}

#[cfg(test)]
mod tests {
    use super::byte_decoder;

    #[test]
    fn byte_table_is_a_bijection() {
        let m = byte_decoder();
        assert_eq!(m.len(), 256);
        assert_eq!(m.get(&'Ġ'), Some(&b' '));
        assert_eq!(m.get(&'Ċ'), Some(&b'\n'));
        assert_eq!(m.get(&'a'), Some(&b'a'));
    }
}
