"""Official-equivalent NLG metrics.

E2E (tuetschek/e2e-metrics): ``mteval`` (BLEU/NIST, both routes), ``meteor`` (the jar bridge and
``open_meteor``, which picks it or ``meteor_python``, the Python port), ``ptb_tokenizer`` (CoreNLP's
PTBTokenizer: the jar bridge, or ``ptb_lexer``, its Python port), ``rouge`` (ROUGE-L), ``cider`` (CIDEr),
``e2e`` (input reading and the five-metric computation). WebNLG/DART (GenerationEval): ``generationeval``,
``multibleu``, ``ter``; ``sacre`` (sacreBLEU BLEU and chrF with their signatures). Modules are imported on demand; nothing here starts a JVM.
"""
