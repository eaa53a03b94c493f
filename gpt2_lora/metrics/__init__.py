"""Official-equivalent NLG metrics.

E2E (tuetschek/e2e-metrics): ``mteval`` (BLEU/NIST, both routes), ``meteor`` (jar bridge),
``ptb_tokenizer`` (CoreNLP PTBTokenizer bridge), ``rouge`` (ROUGE-L), ``cider`` (CIDEr), ``e2e`` (input
reading and the five-metric computation); ``sacre`` (sacreBLEU BLEU and chrF with their signatures). Modules are imported on demand; nothing here starts a JVM.
"""
