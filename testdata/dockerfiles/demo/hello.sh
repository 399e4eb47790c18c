#!/bin/sh
echo "hello from builder"
cat /app/motd
