//! Where events come from: the media plane's publisher start and end.

use relaycast_sfu::lifecycle::StreamLifecycle;
use tokio::sync::{mpsc, oneshot};

use super::sender::Webhooks;

/// Turns the media plane's publisher starts and ends into `stream.started` and `stream.ended`
/// until `stop` fires; then forwards what the channel still holds and returns.
pub async fn forward_lifecycle(mut rx: mpsc::Receiver<StreamLifecycle>, hooks: Webhooks, mut stop: oneshot::Receiver<()>) {
    let send = |ev: StreamLifecycle| match ev {
        StreamLifecycle::Started { stream, .. } => hooks.stream_started(&stream),
        StreamLifecycle::Ended { stream, .. } => hooks.stream_ended(&stream),
    };
    loop {
        tokio::select! {
            ev = rx.recv() => match ev {
                Some(ev) => send(ev),
                None => return,
            },
            _ = &mut stop => {
                while let Ok(ev) = rx.try_recv() {
                    send(ev);
                }
                return;
            }
        }
    }
}
