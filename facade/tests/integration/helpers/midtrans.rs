//! Midtrans as the tests see it: the simulator (embedded, so a test can stop
//! it and start it again on the same port), and signed notifications
//! computed independently of the code under test.

use serde_json::{Value, json};
use sha2::{Digest, Sha512};
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};

use super::{Response, TestApp, free_port};

pub const TEST_MIDTRANS_SERVER_KEY: &str = "SB-Mid-server-integration-tests";

/// The Midtrans simulator on a fixed port.
pub struct Sim {
    pub url: String,
    port: u16,
    notification_url: Option<String>,
    running: Option<(oneshot::Sender<()>, JoinHandle<()>)>,
    http: reqwest::Client,
}

impl Sim {
    pub async fn start(notification_url: Option<String>) -> Sim {
        let port = free_port();
        let mut sim = Sim {
            url: format!("http://127.0.0.1:{port}"),
            port,
            notification_url,
            running: None,
            http: reqwest::Client::new(),
        };
        sim.resume().await;
        sim
    }

    /// Stops listening: calls are refused until [`Sim::resume`].
    pub async fn stop(&mut self) {
        if let Some((stop, task)) = self.running.take() {
            let _ = stop.send(());
            task.abort();
            let _ = task.await;
        }
    }

    /// Listens again on the same port (a fresh simulator, as after a restart).
    pub async fn resume(&mut self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port)).await.expect("simulator port");
        let config = midtrans_sim::Config {
            server_key: TEST_MIDTRANS_SERVER_KEY.to_owned(),
            merchant_id: "M-TEST".to_owned(),
            notification_url: self.notification_url.clone(),
            public_url: self.url.clone(),
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = midtrans_sim::serve(listener, config, async move {
                let _ = stopped.await;
            })
            .await;
        });
        self.running = Some((stop, task));
    }

    /// POSTs to the simulator's admin API (`/_sim/...`).
    pub async fn admin(&self, path: &str, body: Value) -> Value {
        let response = self.http.post(format!("{}{path}", self.url)).json(&body).send().await.expect("simulator");
        assert!(response.status().is_success(), "simulator {path}: {}", response.status());
        response.json().await.expect("JSON")
    }

    pub async fn transaction(&self, order_id: &str) -> Value {
        self.http
            .get(format!("{}/_sim/transactions/{order_id}", self.url))
            .send()
            .await
            .expect("simulator")
            .json()
            .await
            .expect("JSON")
    }

    /// Settings that point a server at this simulator.
    pub fn vars(&self) -> Vec<(&'static str, String)> {
        vec![("MIDTRANS_SNAP_URL", self.url.clone()), ("MIDTRANS_API_URL", self.url.clone())]
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        if let Some((stop, task)) = self.running.take() {
            let _ = stop.send(());
            task.abort();
        }
    }
}

/// Settings the payment tests share: the simulator, quick retries, and a
/// webhook address fixed before the server starts.
pub fn payment_vars(sim: &Sim, listen_port: u16) -> Vec<(String, String)> {
    let mut vars: Vec<(String, String)> = sim.vars().into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    vars.extend([
        ("LISTEN_ADDR".to_owned(), format!("127.0.0.1:{listen_port}")),
        (
            "MIDTRANS_NOTIFICATION_URL".to_owned(),
            format!("http://127.0.0.1:{listen_port}/v1/payments/midtrans/notifications"),
        ),
        ("WORKER_POLL_MS".to_owned(), "50".to_owned()),
    ]);
    vars
}

pub async fn spawn_app(vars: &[(String, String)]) -> TestApp {
    let borrowed: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    TestApp::spawn_with(&borrowed).await
}

/// POSTs a notification to the app's webhook, as Midtrans would.
pub async fn deliver(app: &TestApp, notification: &Value) -> Response {
    app.raw(app.http.post(app.url("/v1/payments/midtrans/notifications")).json(notification)).await
}

/// A notification as Midtrans signs it: SHA512(order_id + status_code +
/// gross_amount + server_key), hex.
pub fn notification(order_id: &str, transaction_status: &str, gross_amount: &str) -> Value {
    let status_code = match transaction_status {
        "pending" => "201",
        "deny" | "expire" | "failure" => "202",
        _ => "200",
    };
    json!({
        "transaction_time": "2026-11-24 10:02:11",
        "transaction_status": transaction_status,
        "transaction_id": uuid::Uuid::now_v7().to_string(),
        "status_message": "midtrans payment notification",
        "status_code": status_code,
        "signature_key": signature(order_id, status_code, gross_amount, TEST_MIDTRANS_SERVER_KEY),
        "payment_type": "bank_transfer",
        "order_id": order_id,
        "merchant_id": "M-TEST",
        "gross_amount": gross_amount,
        "fraud_status": "accept",
        "currency": "IDR",
    })
}

pub fn signature(order_id: &str, status_code: &str, gross_amount: &str, key: &str) -> String {
    let digest = Sha512::digest(format!("{order_id}{status_code}{gross_amount}{key}").as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The webhook address of a server listening on `port`.
pub fn webhook(port: u16) -> Option<String> {
    Some(format!("http://127.0.0.1:{port}/v1/payments/midtrans/notifications"))
}
