//! `rust-worker`: the `conveyor` command (`dev`, `worker`, every flag and `CONVEYOR_*` variable)
//! with the `thumbnail` handler in its workers.
//!
//!   cargo run -p conveyor-example-rust-worker -- dev
//!   cargo run -p conveyor-example-rust-worker -- worker --broker-url amqp://… --cache-url redis://…

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    conveyor::run(conveyor_example_rust_worker::registry()).await
}
