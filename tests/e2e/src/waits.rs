//! The waits every scenario shares. Objects of the API are watched until the condition holds or the
//! timeout ends; what has no watch (the fake Discord's control API, metrics endpoints) is polled by
//! [`poll`], which ends as soon as its look finds what it waits for. No sleep is a synchronisation.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use futures_util::TryStreamExt;
use kube::Resource;
use kube::api::{Api, DeleteParams};
use kube::runtime::wait::{Condition, await_condition};
use kube::runtime::watcher;
use serde::de::DeserializeOwned;

use crate::conditions;

/// Waits until `cond` holds for the object `name` (watch-based), up to `timeout`; returns it.
pub async fn wait_for<K, C>(
    api: &Api<K>,
    name: &str,
    cond: C,
    timeout: Duration,
) -> anyhow::Result<Option<K>>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
    K::DynamicType: Default,
    C: Condition<K>,
{
    tokio::time::timeout(timeout, await_condition(api.clone(), name, cond))
        .await
        .map_err(|_| {
            anyhow!(
                "timed out after {:?} waiting on {} {name}",
                timeout,
                K::kind(&Default::default())
            )
        })?
        .with_context(|| format!("watching {} {name}", K::kind(&Default::default())))
}

/// Waits until `pred` holds for the set of objects matching `selector` (a watch on the
/// list, checked after every change), up to `timeout`; returns that set.
pub async fn wait_list<K, F>(
    api: &Api<K>,
    selector: &str,
    mut pred: F,
    timeout: Duration,
) -> anyhow::Result<Vec<K>>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    K::DynamicType: Default,
    F: FnMut(&[K]) -> bool,
{
    use kube::runtime::watcher::Event;
    let cfg = watcher::Config::default().labels(selector);
    let mut stream = std::pin::pin!(watcher(api.clone(), cfg));
    let waiting = async {
        // The objects by uid, as the watch reports them; the predicate is checked once the
        // initial list is complete and after every change.
        let mut seen: BTreeMap<String, K> = BTreeMap::new();
        let mut listing: BTreeMap<String, K> = BTreeMap::new();
        let uid = |o: &K| o.meta().uid.clone().unwrap_or_default();
        loop {
            let changed = match stream.try_next().await {
                Ok(Some(Event::Init)) => {
                    listing.clear();
                    false
                }
                Ok(Some(Event::InitApply(o))) => {
                    listing.insert(uid(&o), o);
                    false
                }
                Ok(Some(Event::InitDone)) => {
                    seen = std::mem::take(&mut listing);
                    true
                }
                Ok(Some(Event::Apply(o))) => {
                    seen.insert(uid(&o), o);
                    true
                }
                Ok(Some(Event::Delete(o))) => {
                    seen.remove(&uid(&o));
                    true
                }
                Ok(None) => bail!("watch ended"),
                Err(e) => bail!("watch failed: {e}"),
            };
            if changed {
                let objs: Vec<K> = seen.values().cloned().collect();
                if pred(&objs) {
                    return Ok(objs);
                }
            }
        }
    };
    tokio::time::timeout(timeout, waiting).await.map_err(|_| {
        anyhow!(
            "timed out after {:?} waiting on {}s matching {selector:?}",
            timeout,
            K::kind(&Default::default())
        )
    })?
}

/// Deletes an object and waits until it is gone.
pub async fn delete_and_wait<K>(api: &Api<K>, name: &str, timeout: Duration) -> anyhow::Result<()>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
    K::DynamicType: Default,
{
    api.delete(name, &DeleteParams::default()).await?;
    wait_for(api, name, conditions::gone, timeout).await?;
    Ok(())
}

/// What one look of [`poll`] found.
#[derive(Debug)]
pub enum Look<T> {
    /// What the wait was for; the wait returns it.
    Done(T),
    /// Not yet: what was seen instead, for the message should the wait time out.
    NotYet(String),
}

/// Looks every `every` until a look is [`Look::Done`] (the first look at once), up to `timeout`;
/// a look's error ends the wait. For what has no watch: the fake's control API, `/metrics`.
pub async fn poll<T, F, Fut>(
    what: &str,
    timeout: Duration,
    every: Duration,
    mut look: F,
) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Look<T>>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match look().await? {
            Look::Done(found) => return Ok(found),
            Look::NotYet(seen) if tokio::time::Instant::now() >= deadline => {
                bail!("{what}: not within {timeout:?}; last seen: {seen}")
            }
            Look::NotYet(_) => tokio::time::sleep(every).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn poll_returns_the_first_done_look() {
        let mut looks = 0;
        let found = poll(
            "three looks",
            Duration::from_secs(5),
            Duration::from_secs(1),
            || {
                looks += 1;
                let n = looks;
                async move {
                    Ok(if n == 3 {
                        Look::Done(n)
                    } else {
                        Look::NotYet(format!("look {n}"))
                    })
                }
            },
        )
        .await
        .expect("done at the third look");
        assert_eq!(found, 3);
    }

    #[tokio::test(start_paused = true)]
    async fn poll_times_out_with_what_it_saw_last() {
        let err = poll(
            "never",
            Duration::from_secs(2),
            Duration::from_secs(1),
            || async { Ok::<Look<()>, anyhow::Error>(Look::NotYet("still nothing".into())) },
        )
        .await
        .expect_err("times out");
        assert!(
            format!("{err}").contains("never: not within 2s; last seen: still nothing"),
            "{err}"
        );
    }
}
