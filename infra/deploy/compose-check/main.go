// Command compose-check loads a compose file the way `docker compose` does (compose-go, the
// library Docker Compose is built on): it is validated against the Compose Specification's JSON
// schema, anchors and merges resolved, and every service's references checked (depends_on,
// volumes, images or builds). Run by infra/deploy/check.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/compose-spec/compose-go/v2/cli"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: compose-check COMPOSE_FILE")
		os.Exit(2)
	}
	opts, err := cli.NewProjectOptions([]string{os.Args[1]}, cli.WithName("servicedesk"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	project, err := opts.LoadProject(context.Background())
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
	fmt.Printf("%s: valid (%d services, %d volumes)\n", os.Args[1], len(project.Services), len(project.Volumes))
}
