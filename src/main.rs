use conveyor::Registry;

// Every job allocates many small, short-lived buffers across threads: under a submit-and-complete
// load glibc's malloc and free took about a quarter of the CPU (perf); mimalloc takes less.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    conveyor::run(Registry::built_in()).await
}
