// A service whose body never returns has the output type `!`: it compiles with no annotation.
// (What matters here is the type check; `main` starts them only when asked to, so the case runs
// and exits at once.)
use std::time::Duration;

async fn tick() {
    tokio::time::sleep(Duration::from_millis(1)).await;
}

#[allow(unreachable_code)]
fn start() {
    graceful::spawn_service("ticker", async {
        loop {
            tick().await;
        }
    });
    graceful::spawn_service("doomed", async {
        tick().await;
        panic!("never returns")
    });
    graceful::spawn_service("unwritten", async { todo!() });
    graceful::spawn_service("exits", async { std::process::exit(0) });
    graceful::scope("db").spawn_service("driver", async {
        loop {
            tick().await;
        }
    });
    graceful::supervise("consumer", graceful::Restart::on_failure(), || async {
        loop {
            tick().await;
        }
    });
}

#[graceful::main]
async fn main() {
    if std::env::args().any(|arg| arg == "--start") {
        start();
    }
}
