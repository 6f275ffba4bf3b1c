//! "Something changed" between processes, over Redis pub/sub: a replica or
//! worker that commits a change publishes on the thing's channel
//! ([`crate::redis::Redis::publish`]); each replica holds one subscriber
//! connection and subscribes to a channel while someone watches that thing.
//! A signal carries no state (the subscriber reads it where it lives), so a
//! lost one costs freshness until the next, never correctness.

use std::{collections::HashMap, sync::Arc};

use fred::{
    clients::SubscriberClient,
    interfaces::{ClientLike, EventInterface, PubsubInterface},
};
use tokio::sync::{OnceCell, broadcast};

use crate::redis::{RedisError, RedisSettings, builder};

/// One replica's subscriber connection, opened on the first subscription
/// (a worker never subscribes, so it never opens one).
pub struct Subscriber {
    settings: RedisSettings,
    client: OnceCell<SubscriberClient>,
    prefix: Arc<str>,
    /// Subscribers of each channel here: Redis subscriptions are not
    /// counted, so the last one out unsubscribes. Held across the command,
    /// so a subscribe and an unsubscribe of one channel never cross.
    counts: tokio::sync::Mutex<HashMap<String, usize>>,
}

/// What arrives on the subscriber connection.
#[derive(Debug, Clone)]
pub enum Signal {
    /// A publish on this channel (unprefixed).
    Changed(String),
    /// The connection was remade (subscriptions are renewed by then):
    /// anything published meanwhile was missed.
    Reconnected,
    /// The listener fell behind and messages were dropped.
    Missed,
}

impl Subscriber {
    pub fn new(settings: &RedisSettings) -> Subscriber {
        Subscriber {
            settings: settings.clone(),
            client: OnceCell::new(),
            prefix: settings.key_prefix.as_str().into(),
            counts: tokio::sync::Mutex::default(),
        }
    }

    async fn client(&self) -> Result<&SubscriberClient, RedisError> {
        self.client
            .get_or_try_init(|| async {
                let client = builder(&self.settings)?.build_subscriber_client()?;
                // Connects, and reconnects, in the background: with Redis
                // down the first subscriptions fail and are retried.
                let _connection = client.connect();
                // Renews every subscription after a reconnect (a task that
                // lives as long as the connection).
                drop(client.manage_subscriptions());
                let _ = tokio::time::timeout(self.settings.command_timeout, client.wait_for_connect()).await;
                Ok::<_, RedisError>(client)
            })
            .await
    }

    pub async fn subscribe(&self, channel: &str) -> Result<(), RedisError> {
        let mut counts = self.counts.lock().await;
        let count = counts.get(channel).copied().unwrap_or(0);
        if count == 0 {
            self.client().await?.subscribe(format!("{}{channel}", self.prefix)).await?;
        }
        counts.insert(channel.to_owned(), count + 1);
        Ok(())
    }

    pub async fn unsubscribe(&self, channel: &str) -> Result<(), RedisError> {
        let mut counts = self.counts.lock().await;
        match counts.get(channel).copied() {
            Some(count) if count > 1 => {
                counts.insert(channel.to_owned(), count - 1);
                Ok(())
            }
            Some(_) => {
                counts.remove(channel);
                self.client().await?.unsubscribe(format!("{}{channel}", self.prefix)).await
            }
            None => Ok(()),
        }
    }

    /// Every signal from now on, in order, until the connection is closed.
    pub async fn signals(&self) -> Result<impl futures::Stream<Item = Signal> + Send + 'static, RedisError> {
        let client = self.client().await?;
        let prefix = self.prefix.clone();
        let messages = client.message_rx();
        let reconnects = client.reconnect_rx();
        let messages = futures::stream::unfold(messages, move |mut rx| {
            let prefix = prefix.clone();
            async move {
                let signal = match rx.recv().await {
                    Ok(message) => {
                        let channel = message.channel.to_string();
                        Signal::Changed(channel.strip_prefix(&*prefix).unwrap_or(&channel).to_owned())
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => Signal::Missed,
                    Err(broadcast::error::RecvError::Closed) => return None,
                };
                Some((signal, rx))
            }
        });
        let reconnects = futures::stream::unfold(reconnects, |mut rx| async move {
            match rx.recv().await {
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => Some((Signal::Reconnected, rx)),
                Err(broadcast::error::RecvError::Closed) => None,
            }
        });
        Ok(futures::stream::select(messages, reconnects))
    }

    pub async fn shutdown(&self) {
        if let Some(client) = self.client.get() {
            let _ = client.quit().await;
        }
    }
}
