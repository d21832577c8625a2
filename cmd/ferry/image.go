package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
)

func newImageCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "image", Short: "Manage images (import, ls)", Args: needArgs(0, 0, "ferry image import|ls")}
	cmd.AddCommand(&cobra.Command{
		Use:   "import NAME PATH",
		Short: "Import a rootfs tarball or directory, a docker save archive, or an OCI layout or archive",
		Long: `Import an image under NAME. PATH is read by the agent, on its host, and may be:
  a rootfs tarball (plain, gzip or zstd), a rootfs directory,
  a docker save archive, or an OCI image layout directory or archive.
Layers are stored by the sha256 of their content and shared between images.`,
		Args: needArgs(2, 2, "ferry image import NAME PATH"),
		RunE: func(cmd *cobra.Command, args []string) error {
			path, err := filepath.Abs(args[1])
			if err != nil {
				return err
			}
			if _, err := os.Stat(path); err != nil {
				return usagef("%s: %v", args[1], err)
			}
			c, err := client()
			if err != nil {
				return err
			}
			img, err := c.ImportImage(cmd.Context(), args[0], path, progressPrinter("import "+args[0]))
			if err != nil {
				return err
			}
			if jsonOut() {
				return printJSON(os.Stdout, img)
			}
			fmt.Printf("imported %s %s (%d layers, %s)\n", img.Name, shortID(img.ID), len(img.Layers), humanBytes(img.Size))
			return nil
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use:   "ls",
		Short: "List the cluster's images and the nodes that hold them",
		Args:  needArgs(0, 0, "ferry image ls"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := client()
			if err != nil {
				return err
			}
			list, err := c.ClusterImages(cmd.Context())
			if err != nil {
				return err
			}
			if jsonOut() {
				return printJSON(os.Stdout, list)
			}
			var rows [][]string
			for _, img := range list {
				size := "-"
				if img.Size > 0 {
					size = humanBytes(img.Size)
				}
				rows = append(rows, []string{img.Name, shortID(img.ID), fmt.Sprint(len(img.Layers)), size, strings.Join(img.Nodes, ","), ago(img.Created)})
			}
			return table(os.Stdout, []string{"NAME", "ID", "LAYERS", "SIZE", "NODES", "CREATED"}, rows)
		},
	})
	return cmd
}

func shortID(id string) string {
	id = strings.TrimPrefix(id, "sha256:")
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
