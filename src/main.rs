//! Thin entry point: everything lives in the library.

// glibc's malloc took a tenth of the webhook path's CPU (many small, short-lived allocations
// crossing threads); mimalloc serves them from per-thread pages.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    chatbot::cli::main()
}
