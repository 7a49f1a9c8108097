#[graceful::main(uvloop_like = "current_thread", grace = "1m30s")]
async fn main() {
    assert_eq!(graceful::tasks().len(), 1);
}
