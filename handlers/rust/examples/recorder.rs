//! A replica that reports what it does as JSON lines on stdout, for the interop tests of the
//! Python library (handlers/python/tests): `{"owned":["0","3"]}` whenever its partitions change,
//! `{"handled":{"partition":"3","seq":12,"streamSeq":40,"delivered":1}}` per event. Configured by
//! the library's env variables; SIGTERM shuts it down cleanly (releasing), SIGKILL is a crash.

use std::io::Write;

use shardset_handler::{Config, Event, HandlerError, Replica};

fn say(line: serde_json::Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = Config::from_env()?;
    let replica = Replica::start(config, |event: Event| async move {
        say(serde_json::json!({"handled": {
            "partition": event.partition.token(),
            "seq": event.seq,
            "streamSeq": event.stream_seq,
            "delivered": event.delivered,
        }}));
        Ok::<(), HandlerError>(())
    })
    .await?;
    let mut ownership = replica.ownership();
    let terminated = shardset_contract::pod::terminated();
    tokio::pin!(terminated);
    loop {
        let owned: Vec<String> = ownership
            .borrow_and_update()
            .iter()
            .map(|p| p.token())
            .collect();
        say(serde_json::json!({ "owned": owned }));
        tokio::select! {
            changed = ownership.changed() => if changed.is_err() { break },
            () = &mut terminated => break,
        }
    }
    let stats = replica.shutdown().await;
    say(serde_json::json!({"stopped": {"handled": stats.handled}}));
    Ok(())
}
