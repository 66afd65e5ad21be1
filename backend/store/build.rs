// `sqlx::migrate!` embeds the migrations at compile time: a new or changed migration must
// rebuild this crate even when none of its sources changed.
fn main() {
    println!("cargo:rerun-if-changed=../../migrations");
}
