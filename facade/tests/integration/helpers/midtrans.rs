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
    /// The port of the server its notifications go to, if any.
    pub app_port: Option<u16>,
    running: Option<(oneshot::Sender<()>, JoinHandle<()>)>,
    http: reqwest::Client,
}

impl Sim {
    /// A simulator that sends no notifications.
    pub async fn start() -> Sim {
        Sim::listening(None).await
    }

    /// A simulator that notifies the server `TestApp::builder().midtrans(&sim)`
    /// starts, on a port chosen here.
    pub async fn with_webhook() -> Sim {
        Sim::listening(Some(free_port())).await
    }

    async fn listening(app_port: Option<u16>) -> Sim {
        let port = free_port();
        let mut sim = Sim {
            url: format!("http://127.0.0.1:{port}"),
            port,
            app_port,
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
            notification_url: self.app_port.map(webhook),
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
}

impl Drop for Sim {
    fn drop(&mut self) {
        if let Some((stop, task)) = self.running.take() {
            let _ = stop.send(());
            task.abort();
        }
    }
}

/// POSTs a notification to the app's webhook, as Midtrans would — after
/// making it true at the app's Midtrans (the app asks the status API what a
/// notification claims).
pub async fn deliver(app: &TestApp, notification: &Value) -> Response {
    midtrans_knows(&app.vars["MIDTRANS_API_URL"], notification).await;
    app.raw(app.http.post(app.url("/v1/payments/midtrans/notifications")).json(notification)).await
}

/// Makes what `notification` claims the simulator at `api_url`'s truth:
/// its status API then answers the same (a test's stand-in for Midtrans
/// having processed the payment).
pub async fn midtrans_knows(api_url: &str, notification: &Value) {
    let order_id = notification["order_id"].as_str().expect("order_id");
    let amount: f64 = notification["gross_amount"].as_str().expect("gross_amount").parse().expect("amount");
    let truth = json!({
        "status": notification["transaction_status"],
        "gross_amount": amount as i64,
        "fraud_status": notification["fraud_status"],
        "payment_type": notification["payment_type"],
    });
    let response = reqwest::Client::new()
        .put(format!("{api_url}/_sim/transactions/{order_id}"))
        .json(&truth)
        .send()
        .await
        .expect("the simulator answers");
    assert!(response.status().is_success(), "simulator: {}", response.status());
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
pub fn webhook(port: u16) -> String {
    format!("http://127.0.0.1:{port}/v1/payments/midtrans/notifications")
}
