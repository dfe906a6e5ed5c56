//! A plain TCP relay with no protocol knowledge. Benchmarks compare the gateway against it to
//! separate the cost of policy work from the cost of being a userspace proxy at all.
#![forbid(unsafe_code)]

use std::net::SocketAddr;

use anyhow::Context;
use clap::Parser;
use tokio::net::{TcpListener, TcpStream};

#[derive(Parser, Debug)]
#[command(about = "Relay TCP connections byte for byte to one upstream address")]
struct Args {
    /// Address to accept connections on.
    #[arg(long)]
    listen: SocketAddr,
    /// Address every accepted connection is relayed to.
    #[arg(long)]
    upstream: SocketAddr,
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    eprintln!("relay listening on {} -> {}", args.listen, args.upstream);
    loop {
        let (client, peer) = match listener.accept().await {
            Ok(pair) => pair,
            // Running out of descriptors is transient under load; keep accepting.
            Err(err) => {
                eprintln!("accept failed: {err}");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        let upstream = args.upstream;
        tokio::spawn(async move {
            if let Err(err) = relay(client, upstream).await {
                eprintln!("session from {peer} ended: {err:#}");
            }
        });
    }
}

async fn relay(mut client: TcpStream, upstream: SocketAddr) -> anyhow::Result<()> {
    let mut server = TcpStream::connect(upstream)
        .await
        .with_context(|| format!("connecting to {upstream}"))?;
    // Small request/response frames: Nagle would add latency the gateway does not pay either.
    client.set_nodelay(true)?;
    server.set_nodelay(true)?;
    tokio::io::copy_bidirectional(&mut client, &mut server).await?;
    Ok(())
}
