//! Prints the ShardSet CustomResourceDefinition as YAML. `make generate` writes it to
//! `crds/shardset.io_shardsets.yaml`; `make check-generated` (and a unit test) fail when that
//! file is stale.

fn main() -> anyhow::Result<()> {
    print!("{}", shardset_operator::crd::crd_yaml()?);
    Ok(())
}
