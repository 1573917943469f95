//! Who is acting: the authenticated caller on whose behalf a change is
//! made, recorded as `actor` in the history metadata of every change it
//! causes.
//!
//! The edge authenticates; the domain only carries the name. A call runs
//! [`acting_as`] its caller, and every command it submits takes the name
//! along (into a batch applied by another task, too).

use std::future::Future;
use std::sync::Arc;

tokio::task_local! {
    static ACTOR: Option<Arc<str>>;
}

/// Runs `call` on behalf of `actor` (`None`: anonymous, nothing recorded).
pub async fn acting_as<F: Future>(actor: Option<Arc<str>>, call: F) -> F::Output {
    ACTOR.scope(actor, call).await
}

/// The caller the current task acts for, if any.
pub fn current() -> Option<Arc<str>> {
    ACTOR.try_with(Clone::clone).ok().flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_actor_is_known_inside_its_scope_only() {
        assert_eq!(current(), None);
        let inside = acting_as(Some(Arc::from("alice")), async { current() }).await;
        assert_eq!(inside.as_deref(), Some("alice"));
        assert_eq!(current(), None);
    }
}
