//! A network path a test can cut.

use std::sync::{Arc, Mutex};

use tokio::{net::TcpListener, task::JoinHandle};

/// A TCP proxy the test can cut: stands in for the network path to a
/// database (the shared stack must stay up for other tests).
pub struct Cuttable {
    pub port: u16,
    target: String,
    running: Option<JoinHandle<()>>,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Cuttable {
    pub async fn start(target: String) -> Cuttable {
        let port = super::free_port();
        let mut proxy = Cuttable { port, target, running: None, connections: Arc::default() };
        proxy.open().await;
        proxy
    }

    /// Listens (again) and passes connections on.
    pub async fn open(&mut self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port)).await.expect("proxy port");
        let (target, connections) = (self.target.clone(), self.connections.clone());
        self.running = Some(tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let target = target.clone();
                connections.lock().unwrap().push(tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                }));
            }
        }));
    }

    /// Refuses new connections and cuts the open ones.
    pub async fn cut(&mut self) {
        if let Some(running) = self.running.take() {
            running.abort();
            let _ = running.await;
        }
        for connection in self.connections.lock().unwrap().drain(..) {
            connection.abort();
        }
    }
}
