//! Chat templates: the model's own Jinja template (or a per-model override),
//! rendered with minijinja plus its Python-compatibility methods, because
//! Hugging Face templates call `.strip()`, `raise_exception` and friends.

use minijinja::{Environment, Error, ErrorKind, Value};
use serde::Serialize;

use super::LlmError;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TemplateMessage {
    pub role: String,
    pub content: String,
}

pub struct ChatTemplate {
    env: Environment<'static>,
    bos_token: String,
    eos_token: String,
}

fn raise_exception(msg: String) -> Result<Value, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, msg))
}

impl ChatTemplate {
    pub fn new(source: &str, bos_token: &str, eos_token: &str) -> Result<Self, LlmError> {
        let mut env = Environment::new();
        minijinja_contrib::add_to_environment(&mut env);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        // Hugging Face renders templates with trim_blocks and lstrip_blocks on.
        let syntax = minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .map_err(|e| LlmError::Template(e.to_string()))?;
        env.set_syntax(syntax);
        env.add_template_owned("chat", source.to_string())
            .map_err(|e| LlmError::Template(e.to_string()))?;
        Ok(Self {
            env,
            bos_token: bos_token.to_string(),
            eos_token: eos_token.to_string(),
        })
    }

    /// Renders the conversation, ending with the assistant's turn opened.
    pub fn render(&self, messages: &[TemplateMessage]) -> Result<String, LlmError> {
        let tmpl = self
            .env
            .get_template("chat")
            .map_err(|e| LlmError::Template(e.to_string()))?;
        tmpl.render(minijinja::context! {
            messages => Value::from(minijinja::value::Serde(messages)),
            add_generation_prompt => true,
            bos_token => &self.bos_token,
            eos_token => &self.eos_token,
        })
        .map_err(|e| LlmError::Template(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHATML: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are helpful<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    fn msg(role: &str, content: &str) -> TemplateMessage {
        TemplateMessage {
            role: role.into(),
            content: content.into(),
        }
    }

    #[test]
    fn renders_chatml_with_default_system_prompt() -> Result<(), LlmError> {
        let t = ChatTemplate::new(CHATML, "<|im_start|>", "<|im_end|>")?;
        let out = t.render(&[msg("user", "Hi")])?;
        assert_eq!(
            out,
            "<|im_start|>system\nYou are helpful<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
        let out = t.render(&[msg("system", "S"), msg("user", "Hi")])?;
        assert!(out.starts_with("<|im_start|>system\nS<|im_end|>\n"));
        Ok(())
    }

    #[test]
    fn python_methods_and_raise_exception_work() -> Result<(), LlmError> {
        let t = ChatTemplate::new(
            "{{ messages[0].content.strip() }}{% if messages|length > 1 %}{{ raise_exception('only one') }}{% endif %}",
            "",
            "",
        )?;
        assert_eq!(t.render(&[msg("user", "  x  ")])?, "x");
        let err = t.render(&[msg("user", "a"), msg("user", "b")]);
        assert!(matches!(err, Err(LlmError::Template(m)) if m.contains("only one")));
        Ok(())
    }
}
