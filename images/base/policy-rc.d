#!/bin/sh
# berth-base: never start services while packages are installed in a build.
exit 101
