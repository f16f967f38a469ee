//! What a request used, filled in by whoever served it and read when its
//! response has been sent.

use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

#[derive(Debug, Clone, Default)]
pub struct Facts {
    pub model: String,
    /// The backend that answered: the native version or the upstream deployment.
    pub deployment: String,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

/// Shared between the auth layer (which records it) and the handler.
#[derive(Clone, Default)]
pub struct UsageTicket(Arc<Inner>);

#[derive(Default)]
struct Inner {
    facts: Mutex<Facts>,
    /// Set while a producer will still report (an upstream stream's usage
    /// arrives after its last byte).
    pending: std::sync::atomic::AtomicBool,
    done: Notify,
}

impl UsageTicket {
    pub fn serve(&self, model: &str, deployment: &str) {
        let mut f = self.lock();
        // In place: a request is served by a route, then by its deployment.
        f.model.replace_range(.., model);
        f.deployment.replace_range(.., deployment);
    }

    pub fn tokens(&self, prompt: u64, completion: u64) {
        let mut f = self.lock();
        f.prompt_tokens = prompt;
        f.completion_tokens = completion;
    }

    /// Says the usage comes later, through `finish`.
    pub fn defer(&self) {
        self.0.pending.store(true, std::sync::atomic::Ordering::Release);
    }

    pub fn finish(&self, prompt: u64, completion: u64) {
        self.tokens(prompt, completion);
        self.0.pending.store(false, std::sync::atomic::Ordering::Release);
        self.0.done.notify_one();
    }

    /// The facts now, unless a deferred producer has yet to report. They
    /// are taken: a request's usage is recorded once.
    pub fn ready(&self) -> Option<Facts> {
        (!self.0.pending.load(std::sync::atomic::Ordering::Acquire)).then(|| std::mem::take(&mut *self.lock()))
    }

    /// The facts, once any deferred producer has reported (or `wait`
    /// passed); taken, as by [`Self::ready`].
    pub async fn settled(&self, wait: std::time::Duration) -> Facts {
        if self.0.pending.load(std::sync::atomic::Ordering::Acquire) {
            let _ = tokio::time::timeout(wait, self.0.done.notified()).await;
        }
        std::mem::take(&mut *self.lock())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Facts> {
        self.0.facts.lock().unwrap_or_else(|p| p.into_inner())
    }
}
