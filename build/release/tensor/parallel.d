build/release/tensor/parallel.o: tensor/parallel.cpp tensor/parallel.h
tensor/parallel.h:
