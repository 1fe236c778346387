//go:build tools

// Package tools pins what tests/cluster/build-go.sh builds from this module.
package tools

import (
	_ "github.com/nats-io/nats-server/v2"
)
