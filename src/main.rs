fn main() { println!("hallway-webhooks {}", env!("CARGO_PKG_VERSION")); }
