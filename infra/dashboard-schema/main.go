// Command dashboard-schema checks Grafana dashboard JSON files against Grafana's dashboard
// schema as the Grafana Foundation SDK types it: every field must be known, of the right type,
// and every required one present, in the dashboard, its panels (with each panel plugin's own
// options and field config), queries and template variables. Run by the dashboards crate's
// tests: `go run ./infra/dashboard-schema dashboards/*.json`.
package main

import (
	"fmt"
	"os"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/plugins"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: dashboard-schema FILE.json...")
		os.Exit(2)
	}
	// Panel plugins (timeseries, stat, heatmap, …) and datasource query types: without them a
	// panel's options and targets would pass unchecked.
	plugins.RegisterDefaultPlugins()
	failed := false
	for _, path := range os.Args[1:] {
		raw, err := os.ReadFile(path)
		if err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", path, err)
			failed = true
			continue
		}
		var d dashboard.Dashboard
		if err := noErrors(d.UnmarshalJSONStrict(raw)); err != nil {
			fmt.Fprintf(os.Stderr, "%s: not a valid dashboard:\n%v\n", path, err)
			failed = true
			continue
		}
		if err := noErrors(d.Validate()); err != nil {
			fmt.Fprintf(os.Stderr, "%s: invalid: %v\n", path, err)
			failed = true
			continue
		}
		fmt.Printf("%s: valid (%d panels, %d variables)\n", path, len(d.Panels), len(d.Templating.List))
	}
	if failed {
		os.Exit(1)
	}
}

// noErrors turns the SDK's empty error list (a nil cog.BuildErrors, which is a non-nil error
// interface) into nil.
func noErrors(err error) error {
	if errs, ok := err.(cog.BuildErrors); ok && len(errs) == 0 {
		return nil
	}
	return err
}
