// A service's output says whether it failed; any other value must be wrapped in `Ok`.
#[graceful::main]
async fn main() {
    graceful::spawn_service("counter", async { 3u32 });
}
