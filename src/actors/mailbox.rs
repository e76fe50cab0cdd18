//! The one way a handle talks to its actor: how deep a mailbox is, and a
//! request whose answer comes back over a `oneshot`, with a bounded wait for
//! room in the mailbox and, optionally, for the answer. Each handle maps the
//! three ways a request can go unanswered to its own error.

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

/// Messages waiting in the mailbox behind `tx`.
pub fn depth<M>(tx: &mpsc::Sender<M>) -> usize {
    tx.max_capacity() - tx.capacity()
}

/// Why a request got no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unanswered {
    /// The mailbox stayed full for the whole enqueue wait.
    Full,
    /// The actor is gone, or dropped the reply without answering.
    Gone,
    /// The answer did not come within its wait.
    Late,
}

/// Sends `msg(reply)`, waiting up to `enqueue` for room, then waits for the
/// answer: up to `answer` when given, else until the actor answers or drops
/// the reply (actors always do one or the other).
pub async fn ask<M, T>(
    tx: &mpsc::Sender<M>,
    enqueue: Duration,
    answer: Option<Duration>,
    msg: impl FnOnce(oneshot::Sender<T>) -> M,
) -> Result<T, Unanswered> {
    let (reply, answered) = oneshot::channel();
    tx.send_timeout(msg(reply), enqueue)
        .await
        .map_err(|e| match e {
            mpsc::error::SendTimeoutError::Timeout(_) => Unanswered::Full,
            mpsc::error::SendTimeoutError::Closed(_) => Unanswered::Gone,
        })?;
    match answer {
        None => answered.await.map_err(|_| Unanswered::Gone),
        Some(limit) => match tokio::time::timeout(limit, answered).await {
            Ok(result) => result.map_err(|_| Unanswered::Gone),
            Err(_) => Err(Unanswered::Late),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn full_gone_and_late_are_told_apart() {
        let (tx, mut rx) = mpsc::channel::<oneshot::Sender<u8>>(1);
        // Answered.
        let asked = tokio::spawn({
            let tx = tx.clone();
            async move { ask(&tx, Duration::from_secs(1), None, |r| r).await }
        });
        let reply = rx.recv().await.expect("request");
        reply.send(7).expect("asker waits");
        assert_eq!(asked.await.expect("join"), Ok(7));
        assert_eq!(depth(&tx), 0);

        // Late: nobody answers within the limit.
        let late = ask(
            &tx,
            Duration::from_secs(1),
            Some(Duration::from_secs(2)),
            |r| r,
        )
        .await;
        assert_eq!(late, Err(Unanswered::Late));
        // Full: the unanswered request still fills the one slot.
        assert_eq!(depth(&tx), 1);
        let full = ask(&tx, Duration::from_secs(1), None, |r| r).await;
        assert_eq!(full, Err(Unanswered::Full));

        // Gone: the reply is dropped, then the actor.
        drop(rx.recv().await);
        let dropped = tokio::spawn({
            let tx = tx.clone();
            async move { ask(&tx, Duration::from_secs(1), None, |r| r).await }
        });
        drop(rx.recv().await);
        assert_eq!(dropped.await.expect("join"), Err(Unanswered::Gone));
        drop(rx);
        assert_eq!(
            ask(&tx, Duration::from_secs(1), None, |r| r).await,
            Err(Unanswered::Gone)
        );
    }
}
