// Dropped on another thread, the guard would leave the wrong runtime entered on both threads.
fn main() {
    graceful::Builder::new().signals([]).run(async {
        let guard = graceful::handle().enter();
        std::thread::spawn(move || drop(guard));
    });
}
