//! The test mock of GitHub (alerts, revocation, `/user`) as a process, for
//! `benches/serve-load`: `mock_github PORT ALERTS [LATENCY_MS]` serves
//! alerts `acme/app#1..=ALERTS`, each holding a fake, live GitHub token,
//! every answer LATENCY_MS late (default 0).

use keyburn_responder::mock::{alert, fake_github_token, start_mock_on};

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let port: u16 = args.next().and_then(|a| a.parse().ok()).unwrap_or(0);
    let alerts: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let latency: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(0);
    let (mock, url) = start_mock_on(port).await;
    {
        let mut m = mock.lock().unwrap();
        m.latency = std::time::Duration::from_millis(latency);
        for n in 1..=alerts {
            let t = fake_github_token();
            m.alerts.insert(
                format!("acme/app#{n}"),
                alert(n, "github_personal_access_token", &t),
            );
            m.active.insert(t);
        }
    }
    println!("{url}");
    std::future::pending::<()>().await;
}
