/* storage_s3.c - placeholder being written */
