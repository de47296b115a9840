"""TFDS builders that turn the public raw recommendation files into sequences + item metadata.

Import a builder module to register it with TFDS (this package itself imports nothing heavy):
  from llmrec_jax.data.tfds import amazon2014   # `amazon2014/<category>`, `amazon2014/<category>_items`
  from llmrec_jax.data.tfds import movielens    # `movielens_sequences/{100k,1m}[_items]`
  builder = amazon2014.Amazon2014(config="beauty", data_dir=TFDS_DIR)
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=RAW_DIR))
  from llmrec_jax.data.tfds.recdata import recdata_from_tfds   # prepared builders -> RecData
"""
