// Command fleet ships a docker-compose stack to a fresh droplet per release.
package main

import (
	"os"

	"github.com/fleetdeploy/fleet/internal/cli"
)

func main() { os.Exit(cli.Main()) }
