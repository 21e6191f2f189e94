"""DICOM and PACS: MR Image Storage writer, value encoding, on-disk outbox, C-ECHO/C-STORE."""
